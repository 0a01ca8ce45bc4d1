# net/tls: the first flight of a TLS client, as a fresh server connection
# sees it. tls.c is compiled in directly so the driver needs only BoringSSL.
ics_add_fuzzer(fuzz_tls_clienthello
  SOURCES fuzz_tls_clienthello.c ${PROJECT_SOURCE_DIR}/net/tls.c
  LIBS ics::ssl Threads::Threads)
target_include_directories(fuzz_tls_clienthello PRIVATE ${PROJECT_SOURCE_DIR}/net)
