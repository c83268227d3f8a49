// Latent files: every accepted shape normalises to [N, num_ws, w_dim]; every other shape, a
// garbage file or NaN is an input error naming the file.
#include <styleclip/error.h>
#include <styleclip/io/latent_io.h>

#include <chrono>
#include <fstream>

#include <caffe2/serialize/inline_container.h>

#include "test_support.h"

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using test::TempDir;

constexpr int kNumWs = 8;
constexpr int kWDim = 32;

std::string load_error(const fs::path& p) {
  try {
    (void)load_latents(p, kNumWs, kWDim);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kInputUnusable);
    return e.what();
  }
  ADD_FAILURE() << "no error for " << p;
  return "";
}

/// Writes a float32 .npy file (format 1.0) by hand, as numpy.save does.
void write_npy(const fs::path& path, const torch::Tensor& t, const std::string& descr = "<f4") {
  std::string shape = "(";
  for (auto s : t.sizes()) shape += std::to_string(s) + ", ";
  if (t.dim() > 1) shape.resize(shape.size() - 1);
  shape += ")";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const auto len = static_cast<uint16_t>(header.size());
  out.put(static_cast<char>(len & 0xff));
  out.put(static_cast<char>(len >> 8));
  out << header;
  const auto c = t.contiguous();
  out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
}

TEST(LatentIo, AcceptedShapesNormalise) {
  TempDir tmp;
  const auto w = torch::randn({kWDim});
  save_tensor_pt(tmp / "w.pt", w);
  const auto a = load_latents(tmp / "w.pt", kNumWs, kWDim);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{1, kNumWs, kWDim}));
  EXPECT_TRUE(test::tensors_close(a[0][kNumWs - 1], w, 0.0));

  const auto rows = torch::randn({kNumWs, kWDim});
  save_tensor_pt(tmp / "rows.pt", rows);
  EXPECT_TRUE(
      test::tensors_close(load_latents(tmp / "rows.pt", kNumWs, kWDim), rows.unsqueeze(0), 0.0));

  const auto batch = torch::randn({5, kNumWs, kWDim});
  save_tensor_pt(tmp / "batch.pt", batch);
  EXPECT_TRUE(test::tensors_close(load_latents(tmp / "batch.pt", kNumWs, kWDim), batch, 0.0));
}

TEST(LatentIo, NpyFloat32AndFloat64) {
  TempDir tmp;
  const auto batch = torch::randn({2, kNumWs, kWDim});
  write_npy(tmp / "a.npy", batch);
  EXPECT_TRUE(test::tensors_close(load_latents(tmp / "a.npy", kNumWs, kWDim), batch, 0.0));
  write_npy(tmp / "b.npy", batch.to(torch::kFloat64), "<f8");
  EXPECT_TRUE(test::tensors_close(load_latents(tmp / "b.npy", kNumWs, kWDim), batch, 1e-7));
  write_npy(tmp / "c.npy", batch.to(torch::kInt32), "<i4");
  EXPECT_NE(load_error(tmp / "c.npy").find("dtype '<i4' is not supported"), std::string::npos);
}

TEST(LatentIo, PythonTorchSaveIsReadAndOurFilesLoadInPython) {
  TempDir tmp;
  const auto r = test::run_program(
      {STYLECLIP_PYTHON, "-c",
       "import sys, torch\n"
       "torch.save(torch.arange(2*8*32, dtype=torch.float32).reshape(2, 8, 32), sys.argv[1])\n",
       (tmp / "py.pt").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto t = load_latents(tmp / "py.pt", kNumWs, kWDim);
  EXPECT_EQ(t[1][7][31].item<float>(), 2 * 8 * 32 - 1);

  save_tensors_pt(tmp / "list.pt", {torch::ones({1, 3}), torch::zeros({1, 5})});
  const auto r2 = test::run_program(
      {STYLECLIP_PYTHON, "-c",
       "import sys, torch\n"
       "v = torch.load(sys.argv[1])\n"
       "assert isinstance(v, list) and [tuple(x.shape) for x in v] == [(1, 3), (1, 5)], v\n"
       "assert float(v[0].sum()) == 3.0\n",
       (tmp / "list.pt").string()});
  EXPECT_EQ(r2.code, 0) << r2.err;
}

TEST(LatentIo, WrongShapesNameFileAndExpectation) {
  TempDir tmp;
  save_tensor_pt(tmp / "wide.pt", torch::randn({kNumWs, kWDim + 1}));
  const auto m = load_error(tmp / "wide.pt");
  EXPECT_NE(m.find("wide.pt"), std::string::npos) << m;
  EXPECT_NE(m.find("has shape [8, 33]: expected [32], [8, 32] or [N, 8, 32]"), std::string::npos)
      << m;
  save_tensor_pt(tmp / "4d.pt", torch::randn({1, 1, kNumWs, kWDim}));
  EXPECT_NE(load_error(tmp / "4d.pt").find("[1, 1, 8, 32]"), std::string::npos);
  save_tensor_pt(tmp / "empty.pt", torch::randn({0, kNumWs, kWDim}));
  EXPECT_NE(load_error(tmp / "empty.pt").find("[0, 8, 32]"), std::string::npos);
}

TEST(LatentIo, BadFiles) {
  TempDir tmp;
  EXPECT_NE(load_error(tmp / "absent.pt").find("file does not exist"), std::string::npos);
  test::write_text(tmp / "junk.pt", "this is not a zip archive");
  EXPECT_NE(load_error(tmp / "junk.pt").find("not a tensor saved with torch.save"),
            std::string::npos);
  test::write_text(tmp / "junk.npy", "\x93NUMPY\x01\x00\xff\xff{");
  EXPECT_NE(load_error(tmp / "junk.npy").find("invalid .npy file"), std::string::npos);
  test::write_text(tmp / "latent.txt", "0.1 0.2");
  EXPECT_NE(load_error(tmp / "latent.txt").find("unknown extension"), std::string::npos);
  save_tensors_pt(tmp / "list.pt", {torch::ones({kWDim})});
  EXPECT_NE(load_error(tmp / "list.pt").find("expected a single tensor"), std::string::npos);
  auto nan = torch::randn({kNumWs, kWDim});
  nan[3][4] = std::numeric_limits<float>::quiet_NaN();
  save_tensor_pt(tmp / "nan.pt", nan);
  EXPECT_NE(load_error(tmp / "nan.pt").find("NaN or Inf"), std::string::npos);
}

std::vector<char> bytes_of(const std::filesystem::path& path) {
  const auto text = test::read_text(path);
  return {text.begin(), text.end()};
}

/// A torch.save-style zip archive whose data.pkl is `pickle`.
void write_archive(const std::filesystem::path& path, const std::string& pickle) {
  std::string bytes;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) {
      bytes.append(static_cast<const char*>(data), size);
      return size;
    });
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    writer.writeEndOfFile();
  }
  test::write_text(path, bytes);
}

/// An .npy file with this header dict and `payload` bytes of data (format 1.0).
void write_npy(const std::filesystem::path& path, std::string dict, size_t payload) {
  while ((10 + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(dict.size() & 0xff);
  bytes += static_cast<char>(dict.size() >> 8);
  test::write_text(path, bytes + dict + std::string(payload, '\0'));
}

TEST(LatentIo, NpyShapesFromFuzzing) {
  TempDir tmp;
  // Found by fuzz/fuzz_latent: a shape entry with trailing text, and an empty shape that led to
  // memcpy on a null pointer.
  write_npy(tmp / "junk.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (8, 32: x), }",
            8 * 32 * 4);
  EXPECT_NE(load_error(tmp / "junk.npy").find("malformed shape"), std::string::npos);
  write_npy(tmp / "empty.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 32), }", 0);
  EXPECT_NE(load_error(tmp / "empty.npy").find("the array has no elements (shape [0, 32])"),
            std::string::npos)
      << load_error(tmp / "empty.npy");
  write_npy(tmp / "ok.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (8, 32), }",
            8 * 32 * 4);
  EXPECT_EQ(load_latents(tmp / "ok.npy", kNumWs, kWDim).sizes(),
            (std::vector<int64_t>{1, kNumWs, kWDim}));
}

TEST(LatentIo, FuzzCorpusGivesResultsOrOneLineErrors) {
  // The fuzz target's seeds, including every input that once crashed or hung it (first byte:
  // odd = .pt, even = .npy; fuzz/fuzz_latent.cpp). In the normal build: each one loads or throws
  // a styleclip::Error, quickly; any other exception fails the test.
  const auto corpus = std::filesystem::path(STYLECLIP_SOURCE_DIR) / "fuzz" / "corpus" / "latent";
  TempDir tmp;
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(corpus)) {
    const auto bytes = test::read_text(e.path());
    if (bytes.empty()) continue;
    const auto path = tmp / ((bytes[0] & 1) != 0 ? "x.pt" : "x.npy");
    test::write_text(path, bytes.substr(1));
    const auto started = std::chrono::steady_clock::now();
    try {
      (void)load_latents(path, kNumWs, kWDim);
    } catch (const Error&) {
    }
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5)) << e.path();
    ++files;
  }
  EXPECT_GE(files, 6);
  EXPECT_NE(load_error(tmp / "none.pt").find("file does not exist"), std::string::npos);
}

TEST(LatentIo, HostileArchivesFailFastWithoutHugeAllocations) {
  TempDir tmp;
  // A fuzzing find (fuzz/corpus/latent/bigalloc.seed): a length field of 2^31 made LibTorch's
  // unpickler allocate and zero 2 GiB (37 s) before failing. The check rejects it first.
  write_archive(tmp / "big.pt", std::string("\x80\x02X\xff\xff\xff\x7f", 7) + "ab.");
  const auto started = std::chrono::steady_clock::now();
  EXPECT_NE(load_error(tmp / "big.pt").find("a pickle field claims 2147483647 bytes but 3 remain"),
            std::string::npos)
      << load_error(tmp / "big.pt");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  write_archive(tmp / "op.pt", "\x80\x02\xff.");
  EXPECT_NE(load_error(tmp / "op.pt").find("unexpected pickle opcode 0xff at byte 2"),
            std::string::npos);
  write_archive(tmp / "nostop.pt", "\x80\x02N");
  EXPECT_NE(load_error(tmp / "nostop.pt").find("the pickle has no STOP"), std::string::npos);
  // What torch.save and our writer produce passes the check (single tensors and lists).
  save_tensor_pt(tmp / "ok.pt", torch::ones({kNumWs, kWDim}));
  EXPECT_NO_THROW(check_torch_archive(bytes_of(tmp / "ok.pt"), "ok"));
  save_tensors_pt(tmp / "oks.pt", {torch::ones({2}), torch::zeros({3, 4})});
  EXPECT_NO_THROW(check_torch_archive(bytes_of(tmp / "oks.pt"), "oks"));
}

}  // namespace
}  // namespace styleclip
