# The C client's pure response/event decoder (clients/c/icsc_codec.c).
ics_add_fuzzer(fuzz_client_decode
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_client_decode.c
  LIBS icsc_codec)
