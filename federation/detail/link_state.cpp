#include "federation/detail/link_state.hpp"

#include "base/format/format.hpp"

namespace petchat::federation::detail {

using namespace std::chrono_literals;

nats_names::nats_names(std::string const& prefix, std::string const& self)
    : stream(prefix + "-in-" + self),
      inbound_filter(prefix + ".v1.fed." + self + ".*"),
      asset_filter(prefix + ".v1.asset." + self + ".*"),
      prefix_(prefix),
      self_(self) {}

std::string nats_names::fed_to(std::string const& destination) const {
  return prefix_ + ".v1.fed." + destination + "." + self_;
}

std::string nats_names::fed_from(std::string const& origin) const {
  return prefix_ + ".v1.fed." + self_ + "." + origin;
}

std::string nats_names::live_from(std::string const& origin) const {
  return prefix_ + ".v1.live." + self_ + "." + origin;
}

std::string nats_names::asset_to(std::string const& destination) const {
  return prefix_ + ".v1.asset." + destination + "." + self_;
}

std::string nats_names::live_to(std::string const& destination) const {
  return prefix_ + ".v1.live." + destination + "." + self_;
}

std::string last_token(std::string_view subject) {
  auto dot = subject.rfind('.');
  return std::string(dot == std::string_view::npos ? subject : subject.substr(dot + 1));
}

link_state::link_state(options o, directory const& d, secret_key k, local_store& s, std::shared_ptr<spdlog::logger> l)
    : opt(std::move(o)), dir(d), key(k), store(s), log(std::move(l)), names(opt.subject_prefix, dir.self()) {}

void link_state::set_error(std::string what) {
  log->warn("federation: {}", what);
  std::lock_guard lock(status_mutex_);
  cached_.last_error = std::move(what);
}

void link_state::set_unreachable(bool just_lost, std::string const& why) {
  std::string since;
  {
    std::lock_guard lock(status_mutex_);
    if (just_lost || unreachable_since_.empty()) unreachable_since_ = format::rfc3339(format::now_ms());
    since = unreachable_since_;
  }
  set_error("NATS unreachable since " + since + (why.empty() ? "" : " (" + why + ")"));
}

void link_state::clear_error() {
  std::lock_guard lock(status_mutex_);
  cached_.last_error.clear();
  unreachable_since_.clear();
}

void link_state::count(reject_reason r, std::string_view detail) {
  rejects_[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  auto now = clock::now();
  std::lock_guard lock(log_mutex_);
  auto& last = last_logged_[r];
  if (now - last < 10s) return;  // a flood of garbage must not flood the log
  last = now;
  log->warn("federation: refused an envelope ({}){}{} (repeats within 10 s are only counted)", to_string(r),
            detail.empty() ? "" : ": ", detail);
}

std::uint64_t link_state::rejected_total() const {
  std::uint64_t n = 0;
  for (auto const& r : rejects_) n += r.load();
  return n;
}

std::map<std::string, std::uint64_t> link_state::rejected_by_reason() const {
  std::map<std::string, std::uint64_t> out;
  for (std::size_t i = 0; i < rejects_.size(); ++i)
    if (auto n = rejects_[i].load()) out[to_string(static_cast<reject_reason>(i))] = n;
  return out;
}

void link_state::set_stream_figures(std::uint64_t last_seq, std::map<std::string, std::uint64_t> by_origin) {
  std::lock_guard lock(status_mutex_);
  cached_.stream_last_seq = last_seq;
  inbound_by_origin_ = std::move(by_origin);
}

link_state::figures link_state::stream_figures() const {
  std::lock_guard lock(status_mutex_);
  return {cached_, inbound_by_origin_};
}

void link_state::wake() {
  {
    std::lock_guard lock(wake_mutex_);
    woken_ = true;
    ++wakes_;
  }
  wake_cv_.notify_one();
}

bool link_state::pause(clock::duration most) {
  std::unique_lock lock(wake_mutex_);
  bool woken = wake_cv_.wait_for(lock, most, [this] { return woken_ || stopping.load(); });
  woken_ = false;
  return woken;
}

void link_state::begin_round() {
  std::lock_guard lock(wake_mutex_);
  at_round_ = wakes_;
}

void link_state::gather(clock::duration most, std::uint64_t enough) {
  std::unique_lock lock(wake_mutex_);
  wake_cv_.wait_for(lock, most, [&] { return stopping.load() || wakes_ - at_round_ >= enough; });
  woken_ = false;
}

}  // namespace petchat::federation::detail
