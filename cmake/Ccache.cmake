# Use ccache when present: LibTorch headers make every translation unit expensive to rebuild.
find_program(STYLECLIP_CCACHE ccache)
if(STYLECLIP_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER "${STYLECLIP_CCACHE}")
endif()
