# Third-party code comes from Debian packages; nothing is vendored.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS system program_options)
pkg_check_modules(P11KIT REQUIRED IMPORTED_TARGET p11-kit-1)
# sd_notify (READY, STOPPING, WATCHDOG) for edged under systemd; a no-op without it.
pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)
find_package(spdlog REQUIRED)
# The Prometheus endpoint of edged (firmware/): prometheus-cpp's collectables and
# text serializer (its civetweb-based Exposer is not used: Debian's civetweb
# crashes on TLS with OpenSSL 3; Boost.Beast serves the endpoint).
find_package(prometheus-cpp CONFIG REQUIRED COMPONENTS core)

# SoftHSM2 is the lab HSM and the one our tests run against.
find_file(EDGE_SOFTHSM_MODULE libsofthsm2.so
  PATHS /usr/lib/softhsm /usr/lib/x86_64-linux-gnu/softhsm /usr/local/lib/softhsm
  NO_DEFAULT_PATH)
if(NOT EDGE_SOFTHSM_MODULE)
  message(FATAL_ERROR "libsofthsm2.so not found: run scripts/setup (package softhsm2)")
endif()

if(EDGE_TESTS)
  find_package(GTest REQUIRED)
endif()
if(EDGE_BENCH)
  find_package(benchmark REQUIRED)
endif()

# The management API: protobuf schema + gRPC (Debian's libgrpc++-dev ships a CMake package).
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_program(EDGE_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
