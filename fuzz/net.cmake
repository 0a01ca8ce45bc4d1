# net/ parsers of untrusted bytes: request frames and bodies, the config file.
ics_add_fuzzer(fuzz_wire_request SOURCES fuzz_wire_request.c LIBS ics_wire)
ics_add_fuzzer(fuzz_config SOURCES fuzz_config.c LIBS ics_config)
