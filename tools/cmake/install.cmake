# cmake --install build [--prefix P]: libnetkv (shared and static), its
# public headers under include/netkv/, netkv.pc, the CMake package
# (find_package(netkv) -> netkv::netkv), the netkv binary, and the scripts a
# user runs under share/netkv/ (tools/, bench/ as in the source tree, so
# they find each other; they find the netkv binary in ../../bin).
include(CMakePackageConfigHelpers)

install(TARGETS netkv_shared netkv_static EXPORT netkvTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${NKV_PUBLIC_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/netkv)
install(TARGETS netkv RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS tools/plot-replay tools/rxe-vm DESTINATION ${CMAKE_INSTALL_DATADIR}/netkv/tools)
install(PROGRAMS bench/tcp-vs-iperf3 bench/verbs-vs-ib_write_bw DESTINATION ${CMAKE_INSTALL_DATADIR}/netkv/bench)

# pkg-config: relocatable (prefix from the .pc file's own place), so
# `cmake --install --prefix P` gives a netkv.pc that points into P.
file(RELATIVE_PATH NKV_PC_TO_PREFIX /nkv/${CMAKE_INSTALL_LIBDIR}/pkgconfig /nkv)
string(REGEX REPLACE "/$" "" NKV_PC_TO_PREFIX "${NKV_PC_TO_PREFIX}")
set(NKV_PC_REQUIRES "liburing libibverbs librdmacm hwloc jansson libxxhash nettle")
set(NKV_PC_LIBS_PRIVATE "-lm -pthread")
if(NKV_HAVE_CUDA)
  get_filename_component(cudart_dir "${CUDA_cudart_static_LIBRARY}" DIRECTORY)
  string(APPEND NKV_PC_LIBS_PRIVATE " -L${cudart_dir} -lcudart_static -ldl -lrt -lstdc++")
endif()
configure_file(tools/cmake/netkv.pc.in ${PROJECT_BINARY_DIR}/netkv.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/netkv.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

set(cfgdir ${CMAKE_INSTALL_LIBDIR}/cmake/netkv)
install(EXPORT netkvTargets NAMESPACE netkv:: DESTINATION ${cfgdir})
configure_package_config_file(tools/cmake/netkvConfig.cmake.in ${PROJECT_BINARY_DIR}/netkvConfig.cmake
                              INSTALL_DESTINATION ${cfgdir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/netkvConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/netkvConfig.cmake ${PROJECT_BINARY_DIR}/netkvConfigVersion.cmake
        DESTINATION ${cfgdir})
