# Compiler flags shared by every target, through the interface target ics_flags.
add_library(ics_flags INTERFACE)
target_compile_options(ics_flags INTERFACE
  -Wall -Wextra -Wshadow -Wpointer-arith -Wformat=2 -Wno-unused-parameter
  $<$<COMPILE_LANGUAGE:C>:-Wstrict-prototypes -Wmissing-prototypes>
  -fno-strict-aliasing -fno-omit-frame-pointer)
target_compile_definitions(ics_flags INTERFACE _GNU_SOURCE)
if(ICS_WERROR)
  target_compile_options(ics_flags INTERFACE -Werror)
endif()
if(ICS_SANITIZE)
  # Assertions stay on in sanitizer builds (STYLE: they guard invariants).
  target_compile_options(ics_flags INTERFACE -fsanitize=${ICS_SANITIZE} -fno-sanitize-recover=all -UNDEBUG)
  target_link_options(ics_flags INTERFACE -fsanitize=${ICS_SANITIZE})
endif()
if(ICS_COVERAGE)
  target_compile_options(ics_flags INTERFACE --coverage -O0)
  target_link_options(ics_flags INTERFACE --coverage)
endif()
# jemalloc replaces malloc process-wide, except under sanitizers, which must
# own malloc to see every allocation.
if(NOT ICS_SANITIZE)
  set(ICS_MALLOC ics::jemalloc)
else()
  set(ICS_MALLOC "")
endif()
