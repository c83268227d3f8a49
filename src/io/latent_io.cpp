#include <styleclip/error.h>
#include <styleclip/io/atomic_file.h>
#include <styleclip/io/latent_io.h>
#include <styleclip/runtime.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <caffe2/serialize/inline_container.h>
#include <torch/script.h>

namespace styleclip {
namespace fs = std::filesystem;

namespace {

// Latent files are small; anything beyond this is not a latent file (and would exhaust memory
// before failing in a less helpful place).
constexpr std::uintmax_t kMaxLatentFileBytes = std::uintmax_t(2) << 30;

std::vector<char> read_all(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw input_error("cannot read latent '" + path.string() + "': file does not exist");
  }
  if (!fs::is_regular_file(path, ec)) {
    throw input_error("cannot read latent '" + path.string() + "': not a regular file");
  }
  const auto size = fs::file_size(path, ec);
  if (ec || size > kMaxLatentFileBytes) {
    throw input_error("cannot read latent '" + path.string() + "': file is too large for a latent");
  }
  std::ifstream in(path, std::ios::binary);
  std::vector<char> data(size);
  if (!in || !in.read(data.data(), static_cast<std::streamsize>(size))) {
    throw input_error("cannot read latent '" + path.string() + "': read error");
  }
  return data;
}

std::string shape_str(torch::IntArrayRef sizes) {
  std::ostringstream s;
  s << sizes;
  return s.str();
}

/// NumPy format 1.0–3.0 (numpy/lib/format.py): magic, version, header length, a Python dict
/// literal {'descr': '<f4', 'fortran_order': False, 'shape': (…)}, then raw data.
torch::Tensor parse_npy(const std::vector<char>& data, const fs::path& path) {
  const auto bad = [&](const std::string& why) {
    return input_error("cannot read latent '" + path.string() + "': invalid .npy file (" + why +
                       ")");
  };
  if (data.size() < 10 || std::memcmp(data.data(), "\x93NUMPY", 6) != 0) throw bad("bad magic");
  const int major = static_cast<unsigned char>(data[6]);
  size_t header_len = 0;
  size_t offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(data[8]) | (static_cast<unsigned char>(data[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (data.size() < 12) throw bad("truncated header");
    header_len = 0;
    for (int i = 0; i < 4; ++i)
      header_len |= size_t(static_cast<unsigned char>(data[8 + i])) << (8 * i);
    offset = 12;
  } else {
    throw bad("unsupported version " + std::to_string(major));
  }
  if (header_len > 65536 || offset + header_len > data.size()) throw bad("truncated header");
  const std::string header(data.data() + offset, header_len);
  const auto value_of = [&](const std::string& key) -> std::string {
    const auto k = header.find("'" + key + "'");
    if (k == std::string::npos) throw bad("no '" + key + "' in header");
    const auto colon = header.find(':', k);
    if (colon == std::string::npos) throw bad("malformed header");
    return header.substr(colon + 1);
  };
  std::string descr = value_of("descr");
  const auto q1 = descr.find('\'');
  const auto q2 = descr.find('\'', q1 + 1);
  if (q1 == std::string::npos || q2 == std::string::npos) throw bad("malformed descr");
  descr = descr.substr(q1 + 1, q2 - q1 - 1);
  const std::string fortran = value_of("fortran_order");
  if (fortran.find("True") < fortran.find(',')) throw bad("Fortran order is not supported");
  std::string shape_s = value_of("shape");
  const auto p1 = shape_s.find('(');
  const auto p2 = shape_s.find(')');
  if (p1 == std::string::npos || p2 == std::string::npos || p2 < p1) throw bad("malformed shape");
  shape_s = shape_s.substr(p1 + 1, p2 - p1 - 1);
  std::vector<int64_t> shape;
  std::stringstream ss(shape_s);
  std::string item;
  int64_t numel = 1;
  while (std::getline(ss, item, ',')) {
    if (item.find_first_not_of(" \t") == std::string::npos) continue;
    try {
      size_t used = 0;
      const long long v = std::stoll(item, &used);
      // The whole entry must be the number ("8 " yes, "8: x" no: found by fuzzing).
      if (item.find_first_not_of(" \t", used) != std::string::npos)
        throw std::invalid_argument(item);
      if (v < 0 || v > (int64_t(1) << 40)) throw std::out_of_range(item);
      shape.push_back(v);
      numel *= v;
      if (numel > (int64_t(1) << 40)) throw std::out_of_range(item);
    } catch (const std::exception&) {
      throw bad("malformed shape");
    }
  }
  torch::ScalarType dtype;
  size_t item_size = 0;
  if (descr == "<f4" || descr == "=f4") {
    dtype = torch::kFloat32;
    item_size = 4;
  } else if (descr == "<f8" || descr == "=f8") {
    dtype = torch::kFloat64;
    item_size = 8;
  } else if (descr == "<f2" || descr == "=f2") {
    dtype = torch::kFloat16;
    item_size = 2;
  } else {
    throw bad("dtype '" + descr + "' is not supported; save float32 or float64");
  }
  if (numel == 0) throw bad("the array has no elements (shape " + shape_str(shape) + ")");
  const size_t begin = offset + header_len;
  if (data.size() - begin != static_cast<size_t>(numel) * item_size) {
    throw bad("data size does not match shape " + shape_str(shape));
  }
  auto t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  std::memcpy(t.data_ptr(), data.data() + begin, size_t(numel) * item_size);
  return t.to(torch::kFloat32);
}

torch::Tensor parse_pt(const std::vector<char>& data, const fs::path& path) {
  check_torch_archive(data, "cannot read latent '" + path.string() + "'");
  torch::IValue v;
  try {
    v = torch::jit::pickle_load(data);
  } catch (const std::exception& e) {
    throw input_error("cannot read latent '" + path.string() +
                      "': not a tensor saved with torch.save (" + torch_message(e) + ")");
  }
  if (!v.isTensor()) {
    throw input_error("cannot read latent '" + path.string() + "': it holds a " + v.tagKind() +
                      ", expected a single tensor (save it with torch.save(tensor, path))");
  }
  const auto t = v.toTensor();
  if (!t.is_floating_point()) {
    throw input_error("cannot read latent '" + path.string() + "': tensor has integer dtype");
  }
  // The pickle states sizes, strides and offset separately from the data: a file can describe a
  // view beyond its storage (found by fuzzing; LibTorch then throws from deep inside a view op or
  // reads out of bounds). Every element must lie inside the storage.
  int64_t last = t.storage_offset();
  bool empty = false;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.size(d) == 0) empty = true;
    if (t.stride(d) < 0) last = -1;
    if (t.size(d) > 0 && last >= 0) last += (t.size(d) - 1) * t.stride(d);
  }
  const auto storage_bytes = static_cast<int64_t>(t.storage().nbytes());
  if (!empty && (last < 0 || (last + 1) * int64_t(t.element_size()) > storage_bytes)) {
    throw input_error("cannot read latent '" + path.string() +
                      "': the tensor's shape and strides reach beyond its data (corrupt file)");
  }
  try {
    return t.to(torch::kCPU, torch::kFloat32).contiguous();
  } catch (const c10::Error& e) {
    throw input_error("cannot read latent '" + path.string() + "': " + torch_message(e));
  }
}

/// What follows a pickle opcode: nothing, a fixed number of bytes, a little-endian length of
/// `bytes` bytes and that much data, two newline-terminated lines (GLOBAL), or the end (STOP).
/// Only opcodes that torch.save / pickle_save emit are known. Table: CPython Lib/pickletools.py.
struct OpcodeArgument {
  enum Kind { kNone, kFixed, kLength, kLines, kStop, kUnknown } kind;
  size_t bytes;
};

OpcodeArgument argument_of(uint8_t op) {
  switch (op) {
    case '.':  // STOP
      return {OpcodeArgument::kStop, 0};
    case '(':
    case ')':
    case 't':
    case ']':
    case '}':
    case 'u':
    case 's':
    case 'e':
    case 'a':
    case 'R':
    case 'b':
    case 'Q':
    case 'N':
    case 0x85:
    case 0x86:
    case 0x87:
    case 0x88:
    case 0x89:
    case 0x81:
    case 0x94:
    case 0x93:
    case '0':
    case '1':
    case '2':
      return {OpcodeArgument::kNone, 0};
    case 0x80:
    case 'q':
    case 'h':
    case 'K':  // PROTO, BINPUT, BINGET, BININT1
      return {OpcodeArgument::kFixed, 1};
    case 'M':  // BININT2
      return {OpcodeArgument::kFixed, 2};
    case 'r':
    case 'j':
    case 'J':  // LONG_BINPUT, LONG_BINGET, BININT
      return {OpcodeArgument::kFixed, 4};
    case 'G':
    case 0x95:  // BINFLOAT, FRAME
      return {OpcodeArgument::kFixed, 8};
    case 0x8a:
    case 'U':
    case 'C':
    case 0x8c:  // LONG1, SHORT_BINSTRING/BYTES/UNICODE
      return {OpcodeArgument::kLength, 1};
    case 0x8b:
    case 'T':
    case 'B':
    case 'X':  // LONG4, BINSTRING, BINBYTES, BINUNICODE
      return {OpcodeArgument::kLength, 4};
    case 0x8d:
    case 0x8e:  // BINUNICODE8, BINBYTES8
      return {OpcodeArgument::kLength, 8};
    case 'c':  // GLOBAL module\nname\n
      return {OpcodeArgument::kLines, 2};
    default:
      return {OpcodeArgument::kUnknown, 0};
  }
}

/// Walks a pickle (protocols 2 to 5) opcode by opcode, checking that each argument lies inside
/// the data.
std::string pickle_problem(const uint8_t* p, size_t n) {
  size_t i = 0;
  const auto need = [&](size_t k) { return i + k <= n; };
  const auto le = [&](size_t k) {
    uint64_t v = 0;
    for (size_t b = 0; b < k; ++b) v |= uint64_t(p[i + b]) << (8 * b);
    return v;
  };
  const auto line = [&]() {  // a newline-terminated argument (GLOBAL)
    const auto* end = static_cast<const uint8_t*>(std::memchr(p + i, '\n', n - i));
    if (end == nullptr) return false;
    i = size_t(end - p) + 1;
    return true;
  };
  while (i < n) {
    const uint8_t op = p[i++];
    const auto arg = argument_of(op);
    switch (arg.kind) {
      case OpcodeArgument::kStop:
        return i == n ? "" : "data after the end of the pickle";
      case OpcodeArgument::kNone:
        break;
      case OpcodeArgument::kFixed:
        if (!need(arg.bytes)) return "truncated pickle";
        i += arg.bytes;
        break;
      case OpcodeArgument::kLength: {
        if (!need(arg.bytes)) return "truncated pickle";
        const uint64_t len = le(arg.bytes);
        i += arg.bytes;
        if (len > n - i) {
          return "a pickle field claims " + std::to_string(len) + " bytes but " +
                 std::to_string(n - i) + " remain";
        }
        i += size_t(len);
        break;
      }
      case OpcodeArgument::kLines:
        if (!line() || !line()) return "truncated GLOBAL";
        break;
      case OpcodeArgument::kUnknown: {
        char buf[64];
        std::snprintf(buf, sizeof buf, "unexpected pickle opcode 0x%02x at byte %zu", op, i - 1);
        return buf;
      }
    }
  }
  return "the pickle has no STOP";
}

}  // namespace

void check_torch_archive(const std::vector<char>& data, const std::string& what) {
  std::string problem;
  try {
    std::istringstream in(std::string(data.begin(), data.end()));
    caffe2::serialize::PyTorchStreamReader reader(&in);
    if (!reader.hasRecord("data.pkl")) {
      problem = "no data.pkl in the archive";
    } else {
      const auto [ptr, size] = reader.getRecord("data.pkl");
      problem = pickle_problem(static_cast<const uint8_t*>(ptr.get()), size);
    }
  } catch (const std::exception& e) {
    problem = torch_message(e);
  }
  if (!problem.empty()) {
    throw input_error(what + ": not a tensor saved with torch.save (" + problem + ")");
  }
}

torch::Tensor read_tensor_file(const fs::path& path) {
  const auto data = read_all(path);
  const std::string ext = path.extension().string();
  if (ext == ".npy") return parse_npy(data, path);
  if (ext == ".pt" || ext == ".pth") return parse_pt(data, path);
  throw input_error("cannot read latent '" + path.string() +
                    "': unknown extension (expected .pt or .npy)");
}

torch::Tensor normalize_latents(const torch::Tensor& t, int num_ws, int w_dim,
                                const std::string& what) {
  torch::Tensor out;
  if (t.dim() == 1 && t.size(0) == w_dim) {
    out = t.view({1, 1, w_dim}).expand({1, num_ws, w_dim});
  } else if (t.dim() == 2 && t.size(0) == num_ws && t.size(1) == w_dim) {
    out = t.unsqueeze(0);
  } else if (t.dim() == 3 && t.size(0) >= 1 && t.size(1) == num_ws && t.size(2) == w_dim) {
    out = t;
  } else {
    const auto n = std::to_string(num_ws);
    const auto d = std::to_string(w_dim);
    throw input_error(what + " has shape " + shape_str(t.sizes()) + ": expected [" + d + "], [" +
                      n + ", " + d + "] or [N, " + n + ", " + d + "] for this generator");
  }
  if (!torch::isfinite(out).all().item<bool>()) {
    throw input_error(what + " contains NaN or Inf values");
  }
  return out.contiguous();
}

torch::Tensor load_latents(const fs::path& path, int num_ws, int w_dim) {
  return normalize_latents(read_tensor_file(path), num_ws, w_dim, "latent '" + path.string() + "'");
}

std::vector<char> tensor_to_pt_bytes(const torch::Tensor& t) {
  return torch::jit::pickle_save(t.detach().to(torch::kCPU).contiguous());
}

std::vector<char> tensors_to_pt_bytes(const std::vector<torch::Tensor>& ts) {
  c10::List<torch::Tensor> list;
  for (const auto& t : ts) list.push_back(t.detach().to(torch::kCPU).contiguous());
  return torch::jit::pickle_save(list);
}

std::vector<torch::Tensor> read_tensor_list_pt(const fs::path& path) {
  const auto data = read_all(path);
  check_torch_archive(data, "cannot read '" + path.string() + "'");
  try {
    const auto list = torch::jit::pickle_load(data);  // keep the list alive while reading it
    std::vector<torch::Tensor> out;
    for (const auto& v : list.toListRef()) out.push_back(v.toTensor());
    return out;
  } catch (const std::exception& e) {
    throw input_error("cannot read '" + path.string() + "': not a list of tensors (" +
                      torch_message(e) + ")");
  }
}

bool is_styles_path(const fs::path& path) {
  const auto name = path.filename().string();
  const std::string suffix = ".styles.pt";
  return name.size() > suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<torch::Tensor> load_styles(const fs::path& path, const std::vector<int>& style_dims) {
  const auto list = read_tensor_list_pt(path);
  const auto bad = [&](const std::string& why) {
    return input_error("style codes '" + path.string() + "' " + why + ": expected " +
                       std::to_string(style_dims.size()) +
                       " tensors [N, C] (one per style layer, as `generate --save-styles` and "
                       "edits in S write them) for this generator");
  };
  if (list.size() != style_dims.size()) {
    throw bad("hold " + std::to_string(list.size()) + " tensors");
  }
  std::vector<torch::Tensor> out;
  for (size_t l = 0; l < list.size(); ++l) {
    auto t = list[l].to(torch::kFloat32);
    if (t.dim() == 1) t = t.unsqueeze(0);
    if (t.dim() != 2 || t.size(1) != style_dims[l] || t.size(0) < 1 ||
        t.size(0) != (out.empty() ? t.size(0) : out.front().size(0))) {
      throw bad("have layer " + std::to_string(l) + " of shape " + shape_str(list[l].sizes()));
    }
    if (!torch::isfinite(t).all().item<bool>()) {
      throw bad("have non-finite values in layer " + std::to_string(l));
    }
    out.push_back(t.contiguous());
  }
  return out;
}

void save_tensor_pt(const fs::path& path, const torch::Tensor& t) {
  const auto bytes = tensor_to_pt_bytes(t);
  write_file_atomic(path, std::string_view(bytes.data(), bytes.size()));
}

void save_tensors_pt(const fs::path& path, const std::vector<torch::Tensor>& ts) {
  const auto bytes = tensors_to_pt_bytes(ts);
  write_file_atomic(path, std::string_view(bytes.data(), bytes.size()));
}

}  // namespace styleclip
