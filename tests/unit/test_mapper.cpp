// Engine 2 (latent mappers): parity of the LevelsMapper with StyleCLIP's on an imported checkpoint,
// the mapper file format (C++ and the Python importer write the same thing), Ranger's update rule
// against a hand computation, and training on the tiny random bundle.
#include <styleclip/engines/mapper.h>
#include <styleclip/error.h>

#include <cmath>
#include <iostream>

#include <torch/optim/adam.h>

#include "test_support.h"

namespace styleclip {
namespace {

const std::string kScripts = std::string(STYLECLIP_SOURCE_DIR) + "/scripts";

/// Runs Python with scripts/ importable; `code` sees its arguments as sys.argv[1:].
test::RunResult python(const std::string& code, const std::vector<std::string>& args = {}) {
  std::vector<std::string> cmd = {
      STYLECLIP_PYTHON, "-c",
      "import sys; sys.path.insert(0, " + std::string("'") + kScripts + "')\n" + code};
  cmd.insert(cmd.end(), args.begin(), args.end());
  return test::run_program(cmd);
}

/// The Python importer, through its function (not a command line someone may rewire).
test::RunResult import_mapper_py(const std::filesystem::path& ckpt,
                                 const std::filesystem::path& out) {
  return python(
      "from styleclip_export.mapper import import_mapper\n"
      "import_mapper(sys.argv[1], sys.argv[2])\n",
      {ckpt.string(), out.string()});
}

std::string error_of(const std::function<void()>& f, ExitCode expected) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), expected) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return {};
}

LevelsMapperOptions small(int64_t num_ws = 18, int64_t w_dim = 16) {
  LevelsMapperOptions o;
  o.num_ws = num_ws;
  o.w_dim = w_dim;
  o.seed = 7;
  return o;
}

/// A mapper whose biases are not zero, so that they matter.
LevelsMapper random_mapper(const LevelsMapperOptions& o) {
  LevelsMapper m(o);
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters())
    if (p.dim() == 1) p.copy_(torch::randn_like(p) * 30);
  return m;
}

// --- the network ---------------------------------------------------------------------------------

TEST(MapperImport, ReproducesStyleClipLevelsMapper) {
  SKIP_UNLESS_FIXTURE("mapper-styleclip/mohawk_nofine.pt");
  test::TempDir tmp;
  const auto ckpt = test::fixtures_dir() / "mapper-styleclip/mohawk_nofine.pt";
  const auto r = import_mapper_py(ckpt, tmp / "mohawk.mapper.pt");
  ASSERT_EQ(r.code, 0) << r.err;

  auto f = load_mapper(tmp / "mohawk.mapper.pt", 18, 512);
  EXPECT_TRUE(f.mapper->options().groups.coarse);
  EXPECT_TRUE(f.mapper->options().groups.medium);
  EXPECT_FALSE(f.mapper->options().groups.fine);
  EXPECT_EQ(f.mapper->options().pixel_norm, PixelNormMode::kRows);
  EXPECT_EQ(f.strength, 0.1);
  EXPECT_EQ(f.meta.at("prompt"), "mohawk hairstyle");

  const auto expected =
      test::load_pt(test::fixtures_dir() / "mapper-styleclip/mohawk_nofine_expected.pt");
  const auto w = test::dict_tensor(expected, "w");
  torch::NoGradGuard no_grad;
  f.mapper->eval();
  const auto out = f.mapper->forward(w);
  const auto edited = f.mapper->apply(w, f.strength);
  const auto out_ref = test::dict_tensor(expected, "mapper_output");
  const auto edited_ref = test::dict_tensor(expected, "edited_w");
  std::cerr << "mohawk_nofine: max |M(w) - ref| = " << (out - out_ref).abs().max().item<double>()
            << ", max |w' - ref| = " << (edited - edited_ref).abs().max().item<double>() << "\n";
  EXPECT_TRUE(test::tensors_close(out, out_ref, 1e-5));
  EXPECT_TRUE(test::tensors_close(edited, edited_ref, 1e-5));
  EXPECT_EQ(out.narrow(1, 8, 10).abs().max().item<double>(), 0.0);  // no fine mapper
}

TEST(LevelsMapper, GroupRowsFollowTheReferenceAndClampToTheGenerator) {
  using R = std::pair<int64_t, int64_t>;
  EXPECT_EQ(mapper_group_rows(0, 18), R(0, 4));
  EXPECT_EQ(mapper_group_rows(1, 18), R(4, 8));
  EXPECT_EQ(mapper_group_rows(2, 18), R(8, 18));
  EXPECT_EQ(mapper_group_rows(2, 14), R(8, 14));  // 256 px
  EXPECT_EQ(mapper_group_rows(2, 8), R(8, 8));    // 32 px: no fine rows
  EXPECT_EQ(mapper_group_rows(1, 6), R(4, 6));
  EXPECT_EQ(mapper_group_rows(1, 3), R(3, 3));
}

TEST(LevelsMapper, ParameterNamesAreThePublishedOnesWithoutPrefix) {
  auto o = small();
  o.groups.fine = false;
  LevelsMapper m(o);
  std::vector<std::string> names;
  for (const auto& p : m->named_parameters()) names.push_back(p.key());
  ASSERT_EQ(names.size(), 16u);
  EXPECT_EQ(names.front(), "course_mapping.mapping.1.weight");
  EXPECT_EQ(names[1], "course_mapping.mapping.1.bias");
  EXPECT_EQ(names.back(), "medium_mapping.mapping.4.bias");
  // A generator with 8 rows has no fine group even when it is asked for.
  EXPECT_EQ(LevelsMapper(small(8))->parameters().size(), 16u);
  EXPECT_EQ(LevelsMapper(small(18))->parameters().size(), 24u);
}

TEST(LevelsMapper, StrengthZeroIsTheIdentityAndDisabledGroupsKeepTheirRows) {
  auto m = random_mapper(small());
  torch::NoGradGuard no_grad;
  const auto w = torch::randn({3, 18, 16});
  EXPECT_TRUE(test::tensors_close(m->apply(w, 0.0), w, 0.0));
  EXPECT_GT((m->apply(w) - w).abs().max().item<double>(), 1e-3);

  auto o = small();
  o.groups.coarse = false;
  o.groups.fine = false;
  auto only_medium = random_mapper(o);
  const auto edited = only_medium->apply(w, 0.1);
  EXPECT_TRUE(test::tensors_close(edited.narrow(1, 0, 4), w.narrow(1, 0, 4), 0.0));
  EXPECT_TRUE(test::tensors_close(edited.narrow(1, 8, 10), w.narrow(1, 8, 10), 0.0));
  EXPECT_GT((edited.narrow(1, 4, 4) - w.narrow(1, 4, 4)).abs().max().item<double>(), 1e-3);
}

TEST(LevelsMapper, PixelNormModesNormaliseTheirOwnAxis) {
  torch::NoGradGuard no_grad;
  const auto w = torch::randn({2, 18, 16});
  // rows (reference): scaling one feature across all rows of a group changes nothing.
  auto rows = random_mapper(small());
  auto col_scaled = w.clone();
  col_scaled.select(2, 3).mul_(5.0);
  EXPECT_TRUE(test::tensors_close(rows->forward(col_scaled), rows->forward(w), 1e-4));
  // features: scaling one row changes nothing.
  auto o = small();
  o.pixel_norm = PixelNormMode::kFeatures;
  auto feats = random_mapper(o);
  auto row_scaled = w.clone();
  row_scaled.select(1, 5).mul_(5.0);
  EXPECT_TRUE(test::tensors_close(feats->forward(row_scaled), feats->forward(w), 1e-4));
  EXPECT_GT((rows->forward(row_scaled) - rows->forward(w)).abs().max().item<double>(), 1e-3);
}

TEST(LevelsMapper, WrongInputShapeIsAnInputError) {
  auto m = LevelsMapper(small());
  const auto msg = error_of(
      [&] {
        (void)m->forward(torch::zeros({1, 8, 16}));
      },
      ExitCode::kInputUnusable);
  EXPECT_EQ(msg, "mapper input has shape [1, 8, 16]: expected [N, 18, 16]");
}

// --- files
// ----------------------------------------------------------------------------------------

TEST(MapperFile, SaveLoadRoundTrip) {
  test::TempDir tmp;
  auto o = small(14, 16);
  o.groups.medium = false;
  o.pixel_norm = PixelNormMode::kFeatures;
  auto m = random_mapper(o);
  const nlohmann::json meta = {{"prompt", "a smiling face"}, {"history", {1.5, 1.25}}};
  save_mapper(tmp / "m.pt", m, meta, 0.25);

  auto f = load_mapper(tmp / "m.pt", 14, 16);
  EXPECT_EQ(f.strength, 0.25);
  EXPECT_EQ(f.meta, meta);
  EXPECT_FALSE(f.mapper->options().groups.medium);
  EXPECT_EQ(f.mapper->options().pixel_norm, PixelNormMode::kFeatures);
  torch::NoGradGuard no_grad;
  const auto w = torch::randn({2, 14, 16});
  EXPECT_TRUE(test::tensors_close(f.mapper->forward(w), m->forward(w), 0.0));

  // A group the generator has no rows for is not recorded (8 rows: no fine group).
  save_mapper(tmp / "tiny.pt", LevelsMapper(small(8, 16)), meta);
  EXPECT_FALSE(load_mapper(tmp / "tiny.pt", 8, 16).mapper->options().groups.fine);
}

TEST(MapperFile, AMapperFitsOnlyTheGeneratorFamilyItWasTrainedFor) {
  // StyleGAN2 at 512 px and StyleGAN3 both have 16 W+ rows, which mean different things.
  test::TempDir tmp;
  auto o = small(16, 16);
  save_mapper(tmp / "sg2.pt", LevelsMapper(o), nlohmann::json::object());
  o.generator_family = "stylegan3";
  save_mapper(tmp / "sg3.pt", LevelsMapper(o), nlohmann::json::object());
  EXPECT_EQ(load_mapper(tmp / "sg3.pt", 16, 16, torch::kCPU, "stylegan3")
                .mapper->options()
                .generator_family,
            "stylegan3");
  EXPECT_NO_THROW((void)load_mapper(tmp / "sg2.pt", 16, 16));
  const auto msg =
      error_of([&] { (void)load_mapper(tmp / "sg2.pt", 16, 16, torch::kCPU, "stylegan3"); },
               ExitCode::kBundleInvalid);
  EXPECT_NE(msg.find("was trained for a stylegan2 generator; this bundle's is stylegan3"),
            std::string::npos)
      << msg;
  EXPECT_THROW((void)load_mapper(tmp / "sg3.pt", 16, 16), Error);
}

TEST(MapperFile, PythonImporterWritesWhatSaveMapperWrites) {
  test::TempDir tmp;
  // A random checkpoint in StyleCLIP's layout for a 32 px generator (8 W+ rows, width 32).
  auto r = python(
      "import torch\n"
      "from styleclip_export.mapper import random_mapper_checkpoint\n"
      "torch.save(random_mapper_checkpoint(w_dim=32, groups=('coarse', 'medium'), "
      "stylegan_size=32, seed=3), sys.argv[1])\n",
      {(tmp / "ckpt.pt").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  r = import_mapper_py(tmp / "ckpt.pt", tmp / "imported.pt");
  ASSERT_EQ(r.code, 0) << r.err;
  auto f = load_mapper(tmp / "imported.pt", 8, 32);
  save_mapper(tmp / "resaved.pt", f.mapper, f.meta, f.strength);

  // Same keys, same Python types, same tensors, both ways.
  r = python(
      "import torch\n"
      "a, b = torch.load(sys.argv[1]), torch.load(sys.argv[2])\n"
      "ta = {k: type(v).__name__ for k, v in a.items()}\n"
      "tb = {k: type(v).__name__ for k, v in b.items()}\n"
      "assert ta == tb, (ta, tb)\n"
      "assert a['groups'] == b['groups'] == ['coarse', 'medium'], (a['groups'], b['groups'])\n"
      "assert a['state_dict'].keys() == b['state_dict'].keys()\n"
      "assert all(torch.equal(a['state_dict'][k], b['state_dict'][k]) for k in a['state_dict'])\n"
      "import json\n"
      "assert (a['num_ws'], a['w_dim'], a['strength']) == (b['num_ws'], b['w_dim'], "
      "b['strength'])\n"
      "assert json.loads(a['meta']) == json.loads(b['meta'])\n",
      {(tmp / "imported.pt").string(), (tmp / "resaved.pt").string()});
  EXPECT_EQ(r.code, 0) << r.err;

  // A fine mapper cannot be imported for a generator without fine rows.
  r = python(
      "import torch\n"
      "from styleclip_export.mapper import random_mapper_checkpoint, import_mapper\n"
      "torch.save(random_mapper_checkpoint(w_dim=32, groups=('coarse', 'fine'), "
      "stylegan_size=32), sys.argv[1])\n"
      "try:\n"
      "    import_mapper(sys.argv[1], sys.argv[2])\n"
      "except ValueError as e:\n"
      "    print(e)\n"
      "    sys.exit(3)\n",
      {(tmp / "fine.pt").string(), (tmp / "never.pt").string()});
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.out.find("has a fine mapper, but a generator with 8 W+ rows has no rows from 8 on"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(std::filesystem::exists(tmp / "never.pt"));
}

TEST(MapperFile, MismatchesAndForeignFilesAreClearBundleErrors) {
  test::TempDir tmp;
  save_mapper(tmp / "big.pt", LevelsMapper(small(18, 64)), nlohmann::json::object());
  const auto path = (tmp / "big.pt").string();
  EXPECT_EQ(error_of([&] { (void)load_mapper(tmp / "big.pt", 8, 32); }, ExitCode::kBundleInvalid),
            "mapper '" + path +
                "' does not fit this generator: expected 8 W+ rows of width 32, found 18 rows of "
                "width 64 (train or import a mapper for this generator)");
  EXPECT_EQ(error_of([&] { (void)load_mapper(tmp / "none.pt", 8, 32); }, ExitCode::kBundleInvalid),
            "cannot read mapper '" + (tmp / "none.pt").string() + "': file does not exist");

  auto r = python("import torch\ntorch.save(torch.zeros(3), sys.argv[1])\n",
                  {(tmp / "tensor.pt").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(
      error_of([&] { (void)load_mapper(tmp / "tensor.pt", 8, 32); }, ExitCode::kBundleInvalid),
      "invalid mapper '" + (tmp / "tensor.pt").string() + "': not a mapper file (no dict inside)");

  r = python(
      "import torch\n"
      "from styleclip_export.mapper import random_mapper_checkpoint\n"
      "torch.save(random_mapper_checkpoint(w_dim=8), sys.argv[1])\n",
      {(tmp / "styleclip.pt").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto msg =
      error_of([&] { (void)load_mapper(tmp / "styleclip.pt", 18, 8); }, ExitCode::kBundleInvalid);
  EXPECT_NE(msg.find("StyleCLIP training checkpoint: convert it first"), std::string::npos) << msg;
}

// --- Ranger
// ---------------------------------------------------------------------------------------

/// ranger.py's rule written out for one scalar element, to check the optimiser against.
struct RangerRef {
  double p, m = 0, v = 0, slow;
  explicit RangerRef(double p0) : p(p0), slow(p0) {}
};

double n_sma(int t, double beta2) {
  const double n_max = 2 / (1 - beta2) - 1;
  const double b2t = std::pow(beta2, t);
  return n_max - 2 * t * b2t / (1 - b2t);
}

TEST(Ranger, MatchesTheUpdateRuleByHand) {
  constexpr double kLr = 0.5, kB1 = 0.95, kB2 = 0.999, kEps = 1e-5, kAlpha = 0.5;
  constexpr int kK = 6, kSteps = 7;
  // Steps 1–5 are un-rectified (N_sma < 5), 6 and 7 rectified; step 6 is a Lookahead sync.
  for (int t = 1; t <= 5; ++t) EXPECT_LT(n_sma(t, kB2), 5.0) << t;
  EXPECT_GT(n_sma(6, kB2), 5.0);

  // loss = ½·Σ c·(p − target)²  ⇒  grad = c·(p − target). `a` has dim 1 (no gradient
  // centralisation); `b` is [1, 2], so its gradient loses its mean over dim 1.
  const std::array<double, 2> c = {0.3, 1.2}, target = {1.0, -2.0};
  const std::array<double, 2> a0 = {0.5, 0.25}, b0 = {-0.75, 2.0};
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto a = torch::tensor({a0[0], a0[1]}, opts).requires_grad_(true);
  auto b = torch::tensor({{b0[0], b0[1]}}, opts).requires_grad_(true);
  const auto ct = torch::tensor({c[0], c[1]}, opts);
  const auto tt = torch::tensor({target[0], target[1]}, opts);
  Ranger ranger({a, b}, RangerOptions(kLr));

  std::array<RangerRef, 2> ra = {RangerRef(a0[0]), RangerRef(a0[1])};
  std::array<RangerRef, 2> rb = {RangerRef(b0[0]), RangerRef(b0[1])};
  const auto ref_step = [&](std::array<RangerRef, 2>& r, bool gc, int t) {
    std::array<double, 2> g = {c[0] * (r[0].p - target[0]), c[1] * (r[1].p - target[1])};
    if (gc) {
      const double mean = (g[0] + g[1]) / 2;
      g = {g[0] - mean, g[1] - mean};
    }
    const double n_max = 2 / (1 - kB2) - 1, n = n_sma(t, kB2), b2t = std::pow(kB2, t);
    for (size_t i = 0; i < 2; ++i) {
      auto& e = r[i];
      e.v = kB2 * e.v + (1 - kB2) * g[i] * g[i];
      e.m = kB1 * e.m + (1 - kB1) * g[i];
      if (n > 5) {
        const double step =
            std::sqrt((1 - b2t) * (n - 4) / (n_max - 4) * (n - 2) / n * n_max / (n_max - 2)) /
            (1 - std::pow(kB1, t));
        e.p -= kLr * step * e.m / (std::sqrt(e.v) + kEps);
      } else {
        e.p -= kLr / (1 - std::pow(kB1, t)) * e.m;
      }
      if (t % kK == 0) {
        e.slow += kAlpha * (e.p - e.slow);
        e.p = e.slow;
      }
    }
  };

  for (int t = 1; t <= kSteps; ++t) {
    ranger.zero_grad();
    const auto loss = 0.5 * (ct * (a - tt).pow(2)).sum() + 0.5 * (ct * (b[0] - tt).pow(2)).sum();
    loss.backward();
    ranger.step();
    ref_step(ra, false, t);
    ref_step(rb, true, t);
    if (t == 1) {
      // The first step is plain SGD: m/(1 − β₁) = g.
      EXPECT_NEAR(a[0].item<double>(), 0.5 - kLr * 0.3 * (0.5 - 1.0), 1e-15);
    }
    for (int64_t i = 0; i < 2; ++i) {
      EXPECT_NEAR(a[i].item<double>(), ra[static_cast<size_t>(i)].p, 1e-12) << "step " << t;
      EXPECT_NEAR(b[0][i].item<double>(), rb[static_cast<size_t>(i)].p, 1e-12) << "step " << t;
    }
  }
  // What StyleCLIP's ranger.py itself gives for this problem (run in Python; it computes in
  // float32, hence the tolerance).
  EXPECT_NEAR(a[0].item<double>(), 0.68092362, 1e-7);
  EXPECT_NEAR(a[1].item<double>(), -1.42711825, 1e-7);
  EXPECT_NEAR(b[0][0].item<double>(), 1.45275789, 1e-7);
  EXPECT_NEAR(b[0][1].item<double>(), -0.20275789, 1e-7);
  const auto& st = static_cast<const RangerParamState&>(
      *ranger.state().at(optimizer_state_key<std::decay_t<decltype(ranger.state())>>(a)));
  EXPECT_EQ(st.step(), kSteps);
  EXPECT_NEAR(st.slow_buffer()[0].item<double>(), ra[0].slow, 1e-12);
}

TEST(Ranger, SavedStateResumesExactly) {
  test::TempDir tmp;
  for (const std::string name : {"ranger", "adam"}) {
    torch::manual_seed(1);
    const auto w0 = torch::randn({3, 4});
    auto p = w0.clone().requires_grad_(true);
    MapperTrainOptions mo;
    mo.optimizer = name;
    mo.lr = 0.05;
    const auto make = [&](const torch::Tensor& t) -> std::unique_ptr<torch::optim::Optimizer> {
      if (name == "ranger") return std::make_unique<Ranger>(std::vector<torch::Tensor>{t});
      return std::make_unique<torch::optim::Adam>(std::vector<torch::Tensor>{t});
    };
    auto opt = make(p);
    const auto run = [](torch::optim::Optimizer& o, torch::Tensor& x, int steps) {
      for (int s = 0; s < steps; ++s) {
        o.zero_grad();
        (x.sin() * x).sum().backward();
        o.step();
      }
    };
    run(*opt, p, 4);
    save_optimizer_state(tmp / (name + ".opt"), *opt);
    auto q = p.detach().clone().requires_grad_(true);
    auto resumed = make(q);
    load_optimizer_state(tmp / (name + ".opt"), *resumed);
    run(*opt, p, 5);  // crosses Ranger's Lookahead sync (step 6) and rectification
    run(*resumed, q, 5);
    EXPECT_TRUE(test::tensors_close(p, q, 0.0)) << name;
  }
  Ranger r(std::vector<torch::Tensor>{torch::zeros({1}, torch::requires_grad())});
  error_of([&] { load_optimizer_state(tmp / "none.opt", r); }, ExitCode::kInputUnusable);
}

// --- training ------------------------------------------------------------------------------------

TEST(MapperTrainOptions, Validation) {
  MapperTrainOptions o;
  EXPECT_NE(error_of([&] { validate(o, false); }, ExitCode::kUsage).find("--id-lambda needs"),
            std::string::npos);
  o.id_lambda = 0;
  validate(o, false);
  o.optimizer = "sgd";
  EXPECT_EQ(error_of([&] { validate(o, false); }, ExitCode::kUsage),
            "invalid --optimizer 'sgd': expected ranger or adam");
  o.optimizer = "adam";
  o.groups = MapperGroups::from_names({});
  error_of([&] { validate(o, false); }, ExitCode::kUsage);
  EXPECT_EQ(MapperTrainOptions().to_json().at("groups"),
            nlohmann::json({"coarse", "medium", "fine"}));
}

using MapperTrainTiny = test::TinyModelsTest;

TEST_F(MapperTrainTiny, StepsLowerTheClipLossOnTheBatch) {
  torch::Tensor text;
  {
    torch::NoGradGuard no_grad;
    text = clip_->encode_text({"a smiling face"});
  }
  const ClipLoss clip_loss(*clip_, gen_->info().resolution, ClipInput::kRaw);
  const auto w = sampled_wplus({0, 1});
  for (const std::string name : {"ranger", "adam"}) {
    MapperTrainOptions o;
    o.optimizer = name;
    LevelsMapperOptions mo;
    mo.num_ws = gen_->info().num_ws;
    mo.w_dim = gen_->info().w_dim;
    mo.groups = o.groups;
    LevelsMapper mapper(mo);
    auto optimizer = make_mapper_optimizer(mapper, o);
    std::vector<MapperStepLosses> history;
    // Ranger's first 5 steps are un-rectified SGD steps on equalised-lr weights, whose gradients
    // carry lr_mul/√in: they hardly move it, so it gets more steps than Adam.
    const int steps = name == "ranger" ? 24 : 12;
    for (int s = 0; s < steps; ++s)
      history.push_back(
          mapper_train_step(mapper, *optimizer, *gen_, clip_loss, id_.get(), text, w, o));
    torch::NoGradGuard no_grad;
    const double after =
        clip_loss(gen_->synthesis(mapper->apply(w, o.strength)), text).mean().item<double>();
    EXPECT_LT(after, history.front().clip - 1e-4) << name;
    for (const auto& h : history) {
      EXPECT_TRUE(std::isfinite(h.loss)) << name;
      EXPECT_NEAR(h.loss, o.clip_lambda * h.clip + o.l2_lambda * h.l2 + o.id_lambda * h.id, 1e-5);
    }
    EXPECT_GT(history.front().id, -1e-6);  // identity was computed against G(w)
  }
}

}  // namespace
}  // namespace styleclip
