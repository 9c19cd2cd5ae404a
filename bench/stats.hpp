// Latency samples and their percentiles.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

namespace petchat::bench {

class samples {
 public:
  void add(std::uint64_t micros) {
    std::lock_guard lock(mutex_);
    values_.push_back(micros);
  }
  struct summary {
    std::size_t count = 0;
    double p50 = 0, p99 = 0, p999 = 0, max = 0;  // milliseconds
  };
  summary summarize() {
    std::lock_guard lock(mutex_);
    summary s;
    s.count = values_.size();
    if (values_.empty()) return s;
    std::sort(values_.begin(), values_.end());
    auto at = [&](double q) {
      auto i = static_cast<std::size_t>(q * static_cast<double>(values_.size() - 1) + 0.5);
      return static_cast<double>(values_[std::min(i, values_.size() - 1)]) / 1000.0;
    };
    s.p50 = at(0.50);
    s.p99 = at(0.99);
    s.p999 = at(0.999);
    s.max = static_cast<double>(values_.back()) / 1000.0;
    return s;
  }

 private:
  std::mutex mutex_;  // guards values_
  std::vector<std::uint64_t> values_;
};

}  // namespace petchat::bench
