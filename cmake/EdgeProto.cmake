# edge_proto_library(TARGET PROTO_ROOT dir PROTOS a.proto b.proto [GRPC b.proto ...])
# Generates C++ (and gRPC stubs for the files listed in GRPC) into the build tree
# and builds them as a static library whose headers are found as
# <edge/mgmt/v1/x.pb.h>, the path of the .proto under PROTO_ROOT.
function(edge_proto_library target)
  cmake_parse_arguments(ARG "" "PROTO_ROOT" "PROTOS;GRPC" ${ARGN})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/proto_gen)
  file(MAKE_DIRECTORY ${out})
  set(srcs)
  foreach(p IN LISTS ARG_PROTOS)
    get_filename_component(abs ${ARG_PROTO_ROOT}/${p} ABSOLUTE)
    string(REGEX REPLACE "\\.proto$" "" stem ${p})
    set(gen ${out}/${stem}.pb.cc ${out}/${stem}.pb.h)
    set(args --cpp_out=${out})
    if(p IN_LIST ARG_GRPC)
      list(APPEND gen ${out}/${stem}.grpc.pb.cc ${out}/${stem}.grpc.pb.h)
      list(APPEND args --grpc_out=${out} --plugin=protoc-gen-grpc=${EDGE_GRPC_CPP_PLUGIN})
    endif()
    add_custom_command(
      OUTPUT ${gen}
      COMMAND protobuf::protoc ${args} -I ${ARG_PROTO_ROOT} ${abs}
      DEPENDS ${abs} protobuf::protoc
      COMMENT "protoc ${p}"
      VERBATIM)
    list(APPEND srcs ${gen})
  endforeach()
  add_library(${target} STATIC ${srcs})
  target_include_directories(${target} SYSTEM PUBLIC ${out})
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf gRPC::grpc++)
endfunction()
