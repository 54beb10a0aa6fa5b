// lowbit::Error — the one exception type native code throws on bad input or numerical trouble.
// what() is "<CODE>: <message>"; the TS side (lib/errors.ts) turns it into a LowbitError with
// that code. Native code never calls exit/abort on user input.
#pragma once
#include <stdexcept>
#include <string>

namespace lowbit {

struct Error : std::runtime_error {
  std::string code;
  Error(const std::string& c, const std::string& message) : std::runtime_error(c + ": " + message), code(c) {}
};

// Internal invariant violated: a bug in lowbit, not a user error (TS validates user input first).
#define LOWBIT_CHECK(cond, msg)                                                                                                               \
  do {                                                                                                                                        \
    if (!(cond)) throw ::lowbit::Error("LOWBIT_INTERNAL", std::string(msg) + " (" #cond ") at " + __FILE__ + ":" + std::to_string(__LINE__)); \
  } while (0)

}  // namespace lowbit
