# Use ccache when it is installed so rebuilds (and CI re-runs on one machine) stay fast.
find_program(EDGE_CCACHE ccache)
if(EDGE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_C_COMPILER_LAUNCHER ${EDGE_CCACHE})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${EDGE_CCACHE})
endif()
