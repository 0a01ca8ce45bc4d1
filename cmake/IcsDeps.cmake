# Finds every dependency and makes an imported target ics::<name> for it.
# A missing dependency stops the configure step with the Debian package to
# install, so a newcomer never reads a linker error instead.
find_package(PkgConfig)
find_package(Threads REQUIRED)

function(ics_require_lib name header lib package)
  cmake_parse_arguments(A "" "" "HINT_INC;HINT_LIB;EXTRA_LIBS" ${ARGN})
  find_path(${name}_INC ${header} HINTS ${A_HINT_INC} NO_CACHE)
  find_library(${name}_LIB ${lib} HINTS ${A_HINT_LIB} NO_CACHE)
  if(NOT ${name}_INC OR NOT ${name}_LIB)
    message(FATAL_ERROR "icsd needs ${name} (${header}, lib${lib}): "
                        "install the Debian package '${package}' "
                        "(scripts/deps.sh does it for you).")
  endif()
  add_library(ics::${name} UNKNOWN IMPORTED GLOBAL)
  set_target_properties(ics::${name} PROPERTIES
    IMPORTED_LOCATION "${${name}_LIB}"
    INTERFACE_INCLUDE_DIRECTORIES "${${name}_INC}")
  if(A_EXTRA_LIBS)
    set_property(TARGET ics::${name} PROPERTY INTERFACE_LINK_LIBRARIES ${A_EXTRA_LIBS})
  endif()
endfunction()

ics_require_lib(uring    liburing.h        uring    liburing-dev)
ics_require_lib(xxhash   xxhash.h          xxhash   libxxhash-dev)
ics_require_lib(jemalloc jemalloc/jemalloc.h jemalloc libjemalloc-dev)
ics_require_lib(urcu_common urcu.h         urcu-common liburcu-dev)
ics_require_lib(urcu_cds urcu/rculfhash.h  urcu-cds    liburcu-dev)
ics_require_lib(urcu     urcu/urcu-memb.h  urcu-memb   liburcu-dev
                EXTRA_LIBS ics::urcu_common Threads::Threads)

# BoringSSL from android-libboringssl-dev. Its headers live apart from
# OpenSSL's (which Debian may also have installed) and its libraries are not
# on the default search path, so we pin both and link with an rpath.
set(ICS_BORINGSSL_INC /usr/include/android)
set(ICS_BORINGSSL_LIBDIR /usr/lib/x86_64-linux-gnu/android)
if(NOT EXISTS ${ICS_BORINGSSL_INC}/openssl/ssl.h OR NOT EXISTS ${ICS_BORINGSSL_LIBDIR}/libcrypto.so)
  message(FATAL_ERROR "icsd needs BoringSSL: install the Debian package "
                      "'android-libboringssl-dev' (scripts/deps.sh does it for you).")
endif()
add_library(ics::crypto SHARED IMPORTED GLOBAL)
set_target_properties(ics::crypto PROPERTIES
  IMPORTED_LOCATION ${ICS_BORINGSSL_LIBDIR}/libcrypto.so
  INTERFACE_INCLUDE_DIRECTORIES ${ICS_BORINGSSL_INC}
  INTERFACE_LINK_OPTIONS "-Wl,-rpath,${ICS_BORINGSSL_LIBDIR}")
add_library(ics::ssl SHARED IMPORTED GLOBAL)
set_target_properties(ics::ssl PROPERTIES
  IMPORTED_LOCATION ${ICS_BORINGSSL_LIBDIR}/libssl.so
  INTERFACE_INCLUDE_DIRECTORIES ${ICS_BORINGSSL_INC}
  INTERFACE_LINK_LIBRARIES ics::crypto
  INTERFACE_LINK_OPTIONS "-Wl,-rpath,${ICS_BORINGSSL_LIBDIR}")

if(ICS_BENCH)
  find_package(benchmark QUIET)
  if(NOT benchmark_FOUND)
    message(FATAL_ERROR "benchmarks need Google Benchmark: install 'libbenchmark-dev' "
                        "or configure with -DICS_BENCH=OFF.")
  endif()
  # The references the engine is compared against (bench/ only).
  find_package(absl QUIET)
  find_package(TBB QUIET)
  find_path(CK_INC ck_ht.h NO_CACHE)
  find_library(CK_LIB ck NO_CACHE)
endif()
