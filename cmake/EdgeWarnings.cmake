# edge_target_warnings(TARGET): our warning policy, errors when EDGE_WERROR is on.
function(edge_target_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
    -Wnon-virtual-dtor -Wcast-align -Wunused -Woverloaded-virtual -Wformat=2
    -Wimplicit-fallthrough)
  if(EDGE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
