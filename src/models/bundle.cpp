#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/sha256.h>
#include <styleclip/io/verify_cache.h>
#include <styleclip/models/bundle.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>
#include <type_traits>

namespace styleclip {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string describe(const json& j) {
  std::string s = j.dump();
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

/// Reads `obj[key]` as T, or throws a bundle error naming the manifest and the key.
template <typename T>
T field(const json& obj, const std::string& key, const fs::path& manifest,
        const std::string& where) {
  const std::string name = where.empty() ? key : where + "." + key;
  if (!obj.is_object() || !obj.contains(key)) {
    throw bundle_error("invalid manifest '" + manifest.string() + "': missing field '" + name +
                       "'");
  }
  const json& v = obj.at(key);
  // nlohmann converts true to 1 and 64.9 to 64 without a word: a count must be an integer.
  if constexpr (std::is_integral_v<T>) {
    if (v.is_boolean() || v.is_number_float()) {
      throw bundle_error("invalid manifest '" + manifest.string() + "': field '" + name +
                         "' must be a whole number (found " + describe(v) + ")");
    }
    if (!v.is_number_integer()) {
      throw bundle_error("invalid manifest '" + manifest.string() + "': field '" + name +
                         "' has the wrong type (found " + describe(v) + ")");
    }
    const auto wide = v.is_number_unsigned() ? static_cast<long double>(v.get<uint64_t>())
                                             : static_cast<long double>(v.get<int64_t>());
    if (wide < static_cast<long double>(std::numeric_limits<T>::min()) ||
        wide > static_cast<long double>(std::numeric_limits<T>::max())) {
      throw bundle_error("invalid manifest '" + manifest.string() + "': field '" + name +
                         "' is out of range (found " + describe(v) + ")");
    }
  }
  if constexpr (std::is_same_v<T, std::vector<int>>) {
    const bool whole = v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) {
                         return e.is_number_integer() && e.get<int64_t>() >= 0 &&
                                e.get<int64_t>() <= std::numeric_limits<int>::max();
                       });
    if (!whole) {
      throw bundle_error("invalid manifest '" + manifest.string() + "': field '" + name +
                         "' must be a list of whole numbers (found " + describe(v) + ")");
    }
  }
  try {
    return v.get<T>();
  } catch (const json::exception&) {
    throw bundle_error("invalid manifest '" + manifest.string() + "': field '" + name +
                       "' has the wrong type (found " + describe(obj.at(key)) + ")");
  }
}

int positive(const json& obj, const std::string& key, const fs::path& manifest,
             const std::string& where) {
  const int v = field<int>(obj, key, manifest, where);
  if (v <= 0) {
    throw bundle_error("invalid manifest '" + manifest.string() + "': field '" + where + "." + key +
                       "' must be positive, found " + std::to_string(v));
  }
  return v;
}

[[noreturn]] void layout_error(const fs::path& mpath, const GeneratorInfo& info,
                               const std::string& expected) {
  std::ostringstream msg;
  msg << "invalid manifest '" << mpath.string() << "': generator dimensions do not fit together "
      << "(resolution " << info.resolution << ", num_ws " << info.num_ws << ", "
      << info.style_dims.size() << " style layers; expected " << expected << ")";
  throw bundle_error(msg.str());
}

/// StyleGAN2's layout (docs/algorithms.md §3.1): log2(R) resolutions from 4 up, W+ has
/// 2·log2(R) − 2 rows and there are 3·(log2(R) − 2) + 2 style layers: conv1 and to_rgb1 at 4 px,
/// then three per resolution from 8 px up.
void check_stylegan2_layout(const fs::path& mpath, GeneratorInfo& info) {
  int log_size = 0;
  while ((1 << log_size) < info.resolution) ++log_size;
  const auto expected_layers = static_cast<size_t>(3 * (log_size - 2) + 2);
  if ((1 << log_size) != info.resolution || info.num_ws != 2 * log_size - 2 ||
      info.style_dims.size() != expected_layers || info.style_is_rgb.size() != expected_layers) {
    layout_error(mpath, info,
                 "a power of two with num_ws " + std::to_string(2 * log_size - 2) + " and " +
                     std::to_string(expected_layers) + " style layers");
  }
  info.style_is_input.assign(expected_layers, false);
  for (size_t l = 0; l < expected_layers; ++l) {
    info.style_resolutions.push_back(l < 2 ? 4 : 8 << ((l - 2) / 3));
  }
}

/// StyleGAN3's layout (docs/stylegan3.md): one style entry per W+ row — the input transform,
/// each synthesis layer, ToRGB last — with each entry's output size recorded by the exporter.
void check_stylegan3_layout(const json& g, const fs::path& mpath, GeneratorInfo& info) {
  info.style_is_input = field<std::vector<bool>>(g, "style_is_input", mpath, "generator");
  info.style_resolutions = field<std::vector<int>>(g, "style_resolutions", mpath, "generator");
  const auto n = static_cast<size_t>(info.num_ws);
  if (n < 3 || info.style_dims.size() != n || info.style_is_rgb.size() != n ||
      info.style_is_input.size() != n || info.style_resolutions.size() != n ||
      !info.style_is_input[0] || !info.style_is_rgb[n - 1] ||
      std::count(info.style_is_input.begin(), info.style_is_input.end(), true) != 1 ||
      std::count(info.style_is_rgb.begin(), info.style_is_rgb.end(), true) != 1) {
    layout_error(mpath, info,
                 "StyleGAN3's num_ws style layers: the input transform first, ToRGB last, with "
                 "as many style_is_input and style_resolutions entries");
  }
  for (const int r : info.style_resolutions) {
    if (r <= 0) layout_error(mpath, info, "positive style_resolutions");
  }
}

GeneratorInfo parse_generator(const json& g, const fs::path& mpath) {
  GeneratorInfo info;
  info.resolution = positive(g, "resolution", mpath, "generator");
  info.w_dim = positive(g, "w_dim", mpath, "generator");
  info.z_dim = positive(g, "z_dim", mpath, "generator");
  // Both absent from bundles exported before conditional NVIDIA generators were read.
  if (g.contains("c_dim")) {
    info.c_dim = field<int>(g, "c_dim", mpath, "generator");
    if (info.c_dim < 0) {
      throw bundle_error("invalid manifest '" + mpath.string() +
                         "': field 'generator.c_dim' must be 0 or more, found " +
                         std::to_string(info.c_dim));
    }
  }
  if (g.contains("seed_convention")) {
    const auto convention = field<std::string>(g, "seed_convention", mpath, "generator");
    if (convention == to_string(SeedConvention::kTorch)) {
      info.seed_convention = SeedConvention::kTorch;
    } else if (convention == to_string(SeedConvention::kNumpyRandomState)) {
      info.seed_convention = SeedConvention::kNumpyRandomState;
    } else {
      throw bundle_error("invalid manifest '" + mpath.string() +
                         "': field 'generator.seed_convention' is '" + convention +
                         "', expected \"torch\" or \"numpy-randomstate\" (re-export the bundle)");
    }
  }
  info.num_ws = positive(g, "num_ws", mpath, "generator");
  info.n_mlp = positive(g, "n_mlp", mpath, "generator");
  info.style_dims = field<std::vector<int>>(g, "style_dims", mpath, "generator");
  info.style_is_rgb = field<std::vector<bool>>(g, "style_is_rgb", mpath, "generator");
  const auto family = g.contains("family") ? field<std::string>(g, "family", mpath, "generator")
                                           : std::string(to_string(GeneratorFamily::kStyleGAN2));
  if (family == to_string(GeneratorFamily::kStyleGAN3)) {
    info.family = GeneratorFamily::kStyleGAN3;
    check_stylegan3_layout(g, mpath, info);
  } else if (family == to_string(GeneratorFamily::kStyleGAN2)) {
    check_stylegan2_layout(mpath, info);
  } else {
    throw bundle_error("invalid manifest '" + mpath.string() + "': field 'generator.family' is '" +
                       family + "', expected \"stylegan2\" or \"stylegan3\"");
  }
  return info;
}

ClipInfo parse_clip(const json& c, const fs::path& mpath) {
  ClipInfo info;
  const json& cfg = c.contains("config") ? c.at("config") : json::object();
  info.image_resolution = positive(cfg, "image_resolution", mpath, "clip.config");
  info.embed_dim = positive(cfg, "embed_dim", mpath, "clip.config");
  info.context_length = positive(cfg, "context_length", mpath, "clip.config");
  info.vocab_size = positive(cfg, "vocab_size", mpath, "clip.config");
  if (c.contains("vocab_merges")) info.vocab_merges = positive(c, "vocab_merges", mpath, "clip");
  info.image_mean = field<std::vector<double>>(c, "image_mean", mpath, "clip");
  info.image_std = field<std::vector<double>>(c, "image_std", mpath, "clip");
  if (info.image_mean.size() != 3 || info.image_std.size() != 3) {
    throw bundle_error("invalid manifest '" + mpath.string() +
                       "': clip.image_mean and clip.image_std must have 3 values");
  }
  return info;
}

}  // namespace

const char* to_string(GeneratorFamily family) {
  return family == GeneratorFamily::kStyleGAN3 ? "stylegan3" : "stylegan2";
}

const char* to_string(SeedConvention convention) {
  switch (convention) {
    case SeedConvention::kTorch:
      return "torch";
    case SeedConvention::kNumpyRandomState:
      return "numpy-randomstate";
  }
  return "torch";
}

Bundle Bundle::open(const fs::path& dir, Verify verify) {
  Bundle b;
  b.dir_ = dir;
  const fs::path mpath = dir / "manifest.json";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw bundle_error("cannot open model bundle '" + dir.string() +
                       "': folder does not exist (give --models DIR or export one with "
                       "scripts/export_bundle.py)");
  }
  std::ifstream in(mpath);
  if (!in) {
    throw bundle_error("cannot open model bundle '" + dir.string() +
                       "': no manifest.json (export the bundle with scripts/export_bundle.py)");
  }
  try {
    in >> b.manifest_;
  } catch (const json::exception& e) {
    throw bundle_error("invalid manifest '" + mpath.string() + "': not valid JSON (" +
                       std::string(e.what()).substr(0, 120) + ")");
  }
  const json& m = b.manifest_;
  if (!m.is_object() || !m.contains("format") || m.at("format") != "styleclip-bundle") {
    throw bundle_error("invalid manifest '" + mpath.string() +
                       "': not a styleclip bundle (field 'format' must be \"styleclip-bundle\")");
  }
  const int version = field<int>(m, "format_version", mpath, "");
  if (version != kFormatVersion) {
    throw bundle_error("invalid manifest '" + mpath.string() + "': format_version " +
                       std::to_string(version) + " is not supported (this styleclip reads " +
                       std::to_string(kFormatVersion) + "; re-export the bundle)");
  }
  const json& files = m.contains("files") ? m.at("files") : json();
  if (!files.is_object()) {
    throw bundle_error("invalid manifest '" + mpath.string() + "': missing object 'files'");
  }
  VerifyCache cache =
      verify == Verify::kNone ? VerifyCache(fs::path()) : VerifyCache::from_environment();
  for (const auto& [part, entry] : files.items()) {
    const auto rel = field<std::string>(entry, "path", mpath, "files." + part);
    const auto sha = field<std::string>(entry, "sha256", mpath, "files." + part);
    const auto bytes = field<int64_t>(entry, "bytes", mpath, "files." + part);
    // A part lives inside the bundle: a manifest must not point the loader at other files.
    const fs::path relp(rel);
    const bool escapes =
        relp.empty() || relp.is_absolute() || relp.has_root_name() ||
        std::any_of(relp.begin(), relp.end(), [](const fs::path& c) { return c == ".."; });
    if (escapes) {
      throw bundle_error("invalid manifest '" + mpath.string() + "': files." + part + ".path '" +
                         rel +
                         "' must be a path inside the bundle folder (no absolute path, no '..')");
    }
    const fs::path p = dir / relp;
    if (!fs::is_regular_file(p, ec)) {
      throw bundle_error("model bundle '" + dir.string() + "' is missing '" + rel + "' (the " +
                         part + " listed in manifest.json)");
    }
    const auto size = static_cast<int64_t>(fs::file_size(p, ec));
    if (size != bytes) {
      throw bundle_error("model file '" + p.string() + "' has " + std::to_string(size) +
                         " bytes, expected " + std::to_string(bytes) +
                         " (truncated or replaced; re-export the bundle)");
    }
    if (verify == Verify::kNone) continue;
    if (verify == Verify::kChanged && cache.lookup(p) == sha) continue;
    const std::string found = sha256_file(p);
    ++b.files_hashed_;
    if (found != sha) {
      throw bundle_error("model file '" + p.string() + "' has sha256 " + found.substr(0, 12) +
                         "…, expected " + sha.substr(0, 12) +
                         "… (corrupt or replaced; re-export the bundle)");
    }
    cache.remember(p, found);
  }
  cache.save();
  if (b.has("generator")) {
    if (!m.contains("generator")) {
      throw bundle_error("invalid manifest '" + mpath.string() + "': missing section 'generator'");
    }
    b.generator_ = parse_generator(m.at("generator"), mpath);
  }
  if (b.has("clip")) {
    if (!m.contains("clip")) {
      throw bundle_error("invalid manifest '" + mpath.string() + "': missing section 'clip'");
    }
    if (!b.has("vocab")) {
      throw bundle_error("invalid manifest '" + mpath.string() +
                         "': a CLIP model needs its vocabulary (files.vocab)");
    }
    b.clip_ = parse_clip(m.at("clip"), mpath);
  }
  return b;
}

bool Bundle::has(const std::string& part) const {
  return manifest_.contains("files") && manifest_.at("files").contains(part);
}

fs::path Bundle::file(const std::string& part) const {
  if (!has(part)) {
    throw bundle_error("model bundle '" + dir_.string() + "' has no " + part +
                       " (add it with scripts/export_bundle.py)");
  }
  return dir_ / manifest_.at("files").at(part).at("path").get<std::string>();
}

std::string Bundle::sha256(const std::string& part) const {
  (void)file(part);
  return manifest_.at("files").at(part).at("sha256").get<std::string>();
}

std::vector<std::string> Bundle::parts() const {
  std::vector<std::string> out;
  if (manifest_.contains("files")) {
    for (const auto& item : manifest_.at("files").items()) out.push_back(item.key());
  }
  return out;
}

const GeneratorInfo& Bundle::generator() const {
  if (!generator_) (void)file("generator");
  return *generator_;
}

const ClipInfo& Bundle::clip() const {
  if (!clip_) (void)file("clip");
  return *clip_;
}

json Bundle::checksums() const {
  json out = json::object();
  for (const auto& part : parts()) out[part] = sha256(part);
  return out;
}

void Bundle::add_part(const fs::path& dir, const std::string& part, const fs::path& file,
                      const nlohmann::json& section) {
  const auto mpath = dir / "manifest.json";
  nlohmann::json m;
  try {
    std::ifstream in(mpath);
    m = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw bundle_error("cannot update manifest '" + mpath.string() + "': " + e.what());
  }
  const auto rel = file.lexically_relative(dir);
  if (rel.empty() || rel.begin()->string() == "..") {
    throw bundle_error("cannot add '" + file.string() + "' to model bundle '" + dir.string() +
                       "': the file must be inside the bundle folder");
  }
  m["files"][part] = {{"path", rel.generic_string()},
                      {"sha256", sha256_file(file)},
                      {"bytes", static_cast<int64_t>(fs::file_size(file))}};
  if (!section.is_null()) m[part] = section;
  write_file_atomic(mpath, m.dump(2) + "\n");
}

}  // namespace styleclip
