# edge_target_warnings(TARGET): our warning policy, errors when EDGE_WERROR is on.
function(edge_target_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
    -Wnon-virtual-dtor -Wcast-align -Wunused -Woverloaded-virtual -Wformat=2
    -Wimplicit-fallthrough)
  if(EDGE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
    # GCC's ASan instrumentation makes -Wmaybe-uninitialized report variables inside inlined
    # library code that are initialized (GCC 12 with -O2: Boost.Beast's basic_parser optional,
    # libstdc++'s std::regex states); the GCC manual advises against -Werror with sanitizers for
    # this reason. The warning stays an error in the normal build and is still shown here.
    if(EDGE_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      target_compile_options(${target} PRIVATE -Wno-error=maybe-uninitialized)
    endif()
  endif()
endfunction()
