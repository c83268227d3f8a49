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
  if(STYLECLIP_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
