// styleclip/io/latent_io.h — latent files in and out.
//
// Reads `.pt` files written by Python's `torch.save(tensor)` (zip format) and NumPy `.npy`
// files (float16/32/64, C order), and normalises the shapes users have to [N, num_ws, w_dim]:
//   [w_dim] (one W, broadcast), [num_ws, w_dim], [1, num_ws, w_dim], [N, num_ws, w_dim].
// Writes `.pt` files that `torch.load` reads. Every failure is an input error naming the file.
#pragma once

#include <filesystem>
#include <vector>

#include <torch/types.h>

namespace styleclip {

/// Checks a `torch.save` archive before LibTorch's unpickler sees it: the zip must hold a
/// `data.pkl` whose pickle uses only the opcodes torch.save writes, with every length inside the
/// record. (LibTorch 1.13's unpickler allocates whatever a length field claims: a 2 KB file asked
/// for gigabytes in fuzzing.) Throws an input error starting with `what` otherwise.
void check_torch_archive(const std::vector<char>& data, const std::string& what);

/// The tensor stored in a `.pt` or `.npy` file, as float32 on the CPU.
torch::Tensor read_tensor_file(const std::filesystem::path& path);

/// A latent file as W+ [N, num_ws, w_dim] float32 on the CPU.
torch::Tensor load_latents(const std::filesystem::path& path, int num_ws, int w_dim);

/// Shape normalisation on its own (for tensors from elsewhere); `what` names the source.
torch::Tensor normalize_latents(const torch::Tensor& t, int num_ws, int w_dim,
                                const std::string& what);

/// `torch.save`-compatible bytes of a tensor / of a list of tensors (moved to the CPU).
std::vector<char> tensor_to_pt_bytes(const torch::Tensor& t);
std::vector<char> tensors_to_pt_bytes(const std::vector<torch::Tensor>& ts);

/// A list of tensors from a `.pt` file (as `save_tensors_pt` writes); input error naming the file.
std::vector<torch::Tensor> read_tensor_list_pt(const std::filesystem::path& path);

/// Whether `path` names style codes (`*.styles.pt`) rather than a W+ latent.
bool is_styles_path(const std::filesystem::path& path);

/// Style codes from a `.styles.pt` list (one tensor [C_l] or [N, C_l] per style layer), checked
/// against the generator's `style_dims`: per layer [N, C_l] float32 on the CPU. Input error naming
/// the file otherwise.
std::vector<torch::Tensor> load_styles(const std::filesystem::path& path,
                                       const std::vector<int>& style_dims);

/// Atomic writes of the above.
void save_tensor_pt(const std::filesystem::path& path, const torch::Tensor& t);
void save_tensors_pt(const std::filesystem::path& path, const std::vector<torch::Tensor>& ts);

}  // namespace styleclip
