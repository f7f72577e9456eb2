# ASan + UBSan for the whole build when EDGE_SANITIZE is on; fuzzing needs clang.
if(EDGE_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(EDGE_FUZZ AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "EDGE_FUZZ needs clang: configure with -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang")
endif()
# With fuzzing on, every library is instrumented for coverage (the fuzz binaries
# add -fsanitize=fuzzer themselves); otherwise libFuzzer would only see the
# target's own file and fuzz blind.
if(EDGE_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
