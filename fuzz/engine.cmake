# engine/: the operation sequence driver, checked against a reference model.
ics_add_fuzzer(fuzz_engine_ops SOURCES fuzz_engine_ops.c LIBS ics_engine)
