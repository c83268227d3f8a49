# STYLECLIP_FUZZ: build for fuzzing. Everything of ours is compiled with libFuzzer's coverage
# instrumentation and AddressSanitizer + UndefinedBehaviorSanitizer; the fuzz targets link the
# libFuzzer driver (fuzz/CMakeLists.txt). The tool, tests and benchmarks are left out.
if(STYLECLIP_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "STYLECLIP_FUZZ needs clang: add -DCMAKE_CXX_COMPILER=clang++")
  endif()
  set(STYLECLIP_BUILD_CLI OFF CACHE BOOL "" FORCE)
  set(STYLECLIP_BUILD_TESTS OFF CACHE BOOL "" FORCE)
  set(STYLECLIP_BUILD_BENCH OFF CACHE BOOL "" FORCE)
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer -g -O1)
  add_link_options(-fsanitize=address,undefined)
endif()
