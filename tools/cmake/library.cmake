# libnetkv: the transfer engine, topology, scheduler, control protocol and
# their shared helpers as one library, shared (libnetkv.so.0) and static
# (libnetkv.a), built from the parts' object libraries.
#
# Visibility: every object is compiled with -fvisibility=hidden; the public
# headers (NKV_PUBLIC_HEADERS) wrap their declarations in
# `#pragma GCC visibility push(default)`, so the .so exports exactly the
# declared nkv_* API and keeps the internal nkv__* and helper symbols to
# itself. Static archives linked into the .so (cudart_static) are hidden too.

include(GNUInstallDirs)

# The headers a user of the library includes: installed under include/netkv/,
# and copied to the build tree's include/netkv/ so that in-tree users of
# netkv_shared (the examples) see what an installed user sees. They include
# only each other and system headers.
set(NKV_PUBLIC_HEADERS
  ${PROJECT_SOURCE_DIR}/tools/util/netkv_error.h
  ${PROJECT_SOURCE_DIR}/transfer/netkv_transfer.h
  ${PROJECT_SOURCE_DIR}/topo/netkv_topo.h
  ${PROJECT_SOURCE_DIR}/scheduler/netkv_perf.h
  ${PROJECT_SOURCE_DIR}/scheduler/netkv_sched.h
  ${PROJECT_SOURCE_DIR}/scheduler/netkv_policy.h
  ${PROJECT_SOURCE_DIR}/scheduler/proto/netkv_proto.h
)

# nkv_library_part(NAME [PUBLIC deps...] [PRIVATE deps...])
# After add_library(NAME_obj OBJECT sources...) in the part's folder. Deps
# named nkv_* are other parts (their NAME_obj for the compile, their NAME for
# in-tree users); the rest are external (PkgConfig::X, Threads::Threads, m,
# CUDA::...) and end up on libnetkv's own link line.
function(nkv_library_part name)
  cmake_parse_arguments(P "" "" "PUBLIC;PRIVATE" ${ARGN})
  set(obj ${name}_obj)
  set_target_properties(${obj} PROPERTIES POSITION_INDEPENDENT_CODE ON
                        C_VISIBILITY_PRESET hidden CUDA_VISIBILITY_PRESET hidden)
  target_include_directories(${obj} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  add_library(${name} INTERFACE)
  target_include_directories(${name} INTERFACE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${name} INTERFACE netkv_static)
  foreach(scope PUBLIC PRIVATE)
    foreach(d ${P_${scope}})
      if(d MATCHES "^nkv_")
        target_link_libraries(${obj} ${scope} ${d}_obj)
        if(scope STREQUAL "PUBLIC")
          target_link_libraries(${name} INTERFACE ${d})
        endif()
      else()
        target_link_libraries(${obj} ${scope} ${d})
        if(scope STREQUAL "PUBLIC")
          target_link_libraries(${name} INTERFACE ${d})
        endif()
        set_property(GLOBAL APPEND PROPERTY NKV_LIB_DEPS ${d})
      endif()
    endforeach()
  endforeach()
  set_property(GLOBAL APPEND PROPERTY NKV_LIB_PARTS ${obj})
endfunction()

# An external dependency as libnetkv.a's exported link interface names it:
# the target in the build tree, the libraries it stands for once installed
# (an installed netkvConfig.cmake cannot see this tree's imported targets).
function(nkv_install_dep out dep)
  if(dep MATCHES "^PkgConfig::(.+)$")
    set(${out} "$<BUILD_INTERFACE:${dep}>;$<INSTALL_INTERFACE:${${CMAKE_MATCH_1}_LINK_LIBRARIES}>" PARENT_SCOPE)
  elseif(dep STREQUAL "CUDA::cudart_static")
    set(${out} "$<BUILD_INTERFACE:${dep}>;$<INSTALL_INTERFACE:${CUDA_cudart_static_LIBRARY};dl;rt>" PARENT_SCOPE)
  else()
    set(${out} "${dep}" PARENT_SCOPE)
  endif()
endfunction()

# After the parts' folders: libnetkv from every part's objects.
function(nkv_library)
  get_property(parts GLOBAL PROPERTY NKV_LIB_PARTS)
  get_property(deps GLOBAL PROPERTY NKV_LIB_DEPS)
  list(REMOVE_DUPLICATES deps)
  set(objs "")
  foreach(p ${parts})
    list(APPEND objs $<TARGET_OBJECTS:${p}>)
  endforeach()

  set(incdir ${PROJECT_BINARY_DIR}/include/netkv)
  foreach(h ${NKV_PUBLIC_HEADERS})
    get_filename_component(n ${h} NAME)
    configure_file(${h} ${incdir}/${n} COPYONLY)
  endforeach()

  add_library(netkv_shared SHARED ${objs})
  add_library(netkv_static STATIC ${objs})
  foreach(t netkv_shared netkv_static)
    set_target_properties(${t} PROPERTIES OUTPUT_NAME netkv LINKER_LANGUAGE C
                          ARCHIVE_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/lib
                          LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/lib)
    target_include_directories(${t} INTERFACE $<BUILD_INTERFACE:${incdir}>
                               $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/netkv>)
  endforeach()
  set_target_properties(netkv_shared PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
                        EXPORT_NAME netkv)
  set_target_properties(netkv_static PROPERTIES EXPORT_NAME netkv_static)
  target_link_libraries(netkv_shared PRIVATE ${deps})
  # Hide what static archives bring into the .so (cudart_static); refuse
  # undefined symbols, except where a sanitizer runtime provides them at run time.
  target_link_options(netkv_shared PRIVATE -Wl,--exclude-libs,ALL)
  if(NOT NKV_SANITIZE AND NOT NKV_FUZZ)
    target_link_options(netkv_shared PRIVATE -Wl,-z,defs)
  endif()
  foreach(d ${deps})
    nkv_install_dep(i ${d})
    target_link_libraries(netkv_static PRIVATE ${i})
  endforeach()
  add_library(netkv::netkv ALIAS netkv_shared)
  add_library(netkv::netkv_static ALIAS netkv_static)
endfunction()
