# Links a PyTorch package's LibTorch directly (STYLECLIP_TORCH_DIR = .../site-packages/torch),
# for GPU machines where find_package(Torch) stops in its CUDA toolkit detection (nvToolsExt,
# CUDA_TOOLKIT_ROOT_DIR, …) although the package's libraries are complete. Defines the `torch`
# target the rest of the build uses, and C10_CUDA_LIBRARY when the package is a CUDA build.
set(_torch "${STYLECLIP_TORCH_DIR}")
if(NOT EXISTS "${_torch}/lib/libtorch.so" OR NOT EXISTS "${_torch}/include/torch/script.h")
  message(FATAL_ERROR "STYLECLIP_TORCH_DIR='${_torch}' is not a PyTorch package folder "
                      "(expected lib/libtorch.so and include/torch/script.h)")
endif()
if(NOT DEFINED STYLECLIP_TORCH_CXX11_ABI)
  execute_process(
    COMMAND "${STYLECLIP_PYTHON}" -c "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
    OUTPUT_VARIABLE STYLECLIP_TORCH_CXX11_ABI OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
set(_libs "${_torch}/lib/libc10.so" "${_torch}/lib/libtorch_cpu.so" "${_torch}/lib/libtorch.so")
if(EXISTS "${_torch}/lib/libtorch_cuda.so")
  set(C10_CUDA_LIBRARY "${_torch}/lib/libc10_cuda.so")
  # --no-as-needed: nothing references libtorch_cuda's symbols directly, but loading it is what
  # registers the CUDA kernels; without it torch::cuda::is_available() is false.
  list(APPEND _libs "-Wl,--no-as-needed" "${_torch}/lib/libtorch_cuda.so" "-Wl,--as-needed"
       "${C10_CUDA_LIBRARY}")
endif()
add_library(torch INTERFACE IMPORTED)
set_target_properties(torch PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${_torch}/include;${_torch}/include/torch/csrc/api/include"
  INTERFACE_LINK_LIBRARIES "${_libs}"
  INTERFACE_LINK_OPTIONS "-Wl,-rpath,${_torch}/lib"
  INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=${STYLECLIP_TORCH_CXX11_ABI}")
message(STATUS "styleclip: LibTorch linked directly from ${_torch} (C++11 ABI ${STYLECLIP_TORCH_CXX11_ABI})")
