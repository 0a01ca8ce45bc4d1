# net/ policy modules: the decoders of untrusted bytes they own. The
# sources are compiled in directly (with the fuzzer's instrumentation);
# principal.c and keys.c log through the store, so the drivers link
# ics_persist.
set(ICS_POLICY_FUZZ_INC ${PROJECT_SOURCE_DIR}/net ${PROJECT_SOURCE_DIR}/engine
    ${PROJECT_SOURCE_DIR}/persist)
ics_add_fuzzer(fuzz_prefs_value
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_prefs_value.c ${PROJECT_SOURCE_DIR}/net/prefs.c
  LIBS ics::crypto)
target_include_directories(fuzz_prefs_value PRIVATE ${ICS_POLICY_FUZZ_INC})
foreach(f principal_set principal_line)
  ics_add_fuzzer(fuzz_${f}
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_${f}.c ${PROJECT_SOURCE_DIR}/net/principal.c
            ${PROJECT_SOURCE_DIR}/net/buf.c
    LIBS ics_persist ics::crypto Threads::Threads)
  target_include_directories(fuzz_${f} PRIVATE ${ICS_POLICY_FUZZ_INC})
endforeach()
ics_add_fuzzer(fuzz_keys_validate
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_keys_validate.c ${PROJECT_SOURCE_DIR}/net/keys.c
          ${PROJECT_SOURCE_DIR}/net/buf.c
  LIBS ics_persist ics::crypto Threads::Threads)
target_include_directories(fuzz_keys_validate PRIVATE ${ICS_POLICY_FUZZ_INC})
