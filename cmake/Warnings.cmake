# Warnings for our own targets only (third-party headers come in as SYSTEM through their targets).
function(styleclip_set_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall            # the usual suspects
    -Wextra          # unused parameters, sign/enum mix-ups
    -Wpedantic       # stay within ISO C++17 so other compilers build it
    -Wshadow         # a local hiding a member is a classic source of silent bugs
    -Wnon-virtual-dtor
    -Wcast-align
    -Wunused
    -Woverloaded-virtual
    -Wformat=2)
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    # LibTorch's TORCH_ARG-style macros are called with an empty variadic part; clang's
    # -Wpedantic flags each use in our code although the macros are LibTorch's.
    target_compile_options(${target} PRIVATE -Wno-gnu-zero-variadic-macro-arguments)
  endif()
  if(STYLECLIP_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
