// GoogleTest glue for SIP integration tests: show the peers' logs when a test fails.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

namespace edge::test {

// Collects named text sources (a Kamailio log, a UA transcript, baresip's
// output) and prints them when the current test has failed. Call dump() from
// TearDown(), while the peers still exist.
class FailureDump {
 public:
  void add(std::string name, std::function<std::string()> source) {
    sources_.emplace_back(std::move(name), std::move(source));
  }
  void clear() { sources_.clear(); }
  // Prints the last max_bytes of each source when the test has failed.
  void dump(std::size_t max_bytes = 24000) const {
    if (!::testing::Test::HasFailure()) return;
    for (const auto& [name, source] : sources_) {
      std::string text;
      try {
        text = source();
      } catch (const std::exception& e) {
        text = std::string("(unavailable: ") + e.what() + ")";
      }
      if (text.size() > max_bytes) text = "[...]\n" + text.substr(text.size() - max_bytes);
      std::cerr << "\n===== " << name << " =====\n" << text << "\n===== end of " << name << " =====\n";
    }
  }

 private:
  std::vector<std::pair<std::string, std::function<std::string()>>> sources_;
};

}  // namespace edge::test
