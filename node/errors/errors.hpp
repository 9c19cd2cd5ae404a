// The closed set of expected failures a client or admin can be told about, with their
// stable machine codes and HTTP statuses (the table in docs/PROTOCOL.md). Components return
// them as values; only bugs and start-up failures are exceptions.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace petchat::errors {

enum class code {
  bad_request,
  invalid_json,
  missing_field,
  invalid_field,
  invalid_name,
  weak_password,
  missing_token,
  invalid_token,
  token_expired,
  session_revoked,
  invalid_credentials,
  invalid_refresh_token,
  refresh_token_reused,
  user_disabled,
  registration_closed,
  invalid_registration_token,
  not_found,
  user_not_found,
  session_not_found,
  method_not_allowed,
  request_timeout,
  name_taken,
  body_too_large,
  rate_limited,
  header_too_large,
  internal,
  shutting_down,
  // Messaging (REST and the live stream).
  not_a_member,
  not_sender,
  delete_window_passed,
  presence_hidden,
  conversation_not_found,
  message_not_found,
  malformed_frame,
  unknown_frame,
  frame_too_large,
  not_authenticated,
  too_many_streams,
  // Groups.
  forbidden_role,
  owner_must_hand_over,
  group_full,
  too_many_groups,
  already_member,
  group_adds_restricted,
  // Assets.
  asset_not_found,
  upload_not_found,
  offset_mismatch,
  upload_busy,
  length_required,
  asset_too_large,
  quota_exceeded,
  upload_overflow,
  range_not_satisfiable,
  too_many_uploads,
  hash_mismatch,
  asset_pending,
  // Push.
  push_endpoint_forbidden,
  push_target_not_found,
  too_many_push_targets,
  push_disabled,
  // The gateway.
  too_many_connections,
  cors_origin_forbidden,
  unsupported_media_type,
  config_invalid,
  backup_in_progress,
  region_listed,
  // The stores.
  store_unavailable,
  // A signed-in user's own account.
  wrong_password,
};

// The stable machine code, e.g. "name_taken".
char const* name(code c) noexcept;

// The HTTP status that goes with it, e.g. 409.
unsigned http_status(code c) noexcept;

struct failure {
  errors::code code = code::internal;
  std::string message;              // for people; may change between versions
  std::string field;                // the request field at fault, if any
  std::uint32_t retry_after_s = 0;  // for rate_limited
  // Numbers the client may act on, printed as fields of the error object (quota_exceeded:
  // used_bytes, limit_bytes, needed_bytes).
  std::vector<std::pair<std::string, std::uint64_t>> numbers{};
};

inline failure fail(code c, std::string message, std::string field = {}) {
  return failure{c, std::move(message), std::move(field), 0, {}};
}

// rate_limited, to be tried again after `wait_ms` (Retry-After in whole seconds, at least 1).
inline failure rate_limited(std::string message, std::int64_t wait_ms) {
  auto f = fail(code::rate_limited, std::move(message));
  f.retry_after_s = static_cast<std::uint32_t>(wait_ms <= 1000 ? 1 : (wait_ms + 999) / 1000);
  return f;
}

// The answer to a write a store did not take: store_unavailable (retry in 5 s) when the
// store says why it takes no writes now (`why`: a full or failing disk), else internal.
// A client is told no more than that: `why` is the store's own text (RocksDB's names files
// under the data dir), which the node logs and admin status shows, never a client.
inline constexpr char const* store_unavailable_message = "the node cannot store this now; try again later";
inline failure write_failure(std::string const& what, std::string const& why) {
  if (why.empty()) return fail(code::internal, what);
  auto f = fail(code::store_unavailable, store_unavailable_message);
  f.retry_after_s = 5;
  return f;
}

// A value or a failure.
template <typename T>
class result {
 public:
  result(T value) : v_(std::move(value)) {}
  result(failure f) : v_(std::move(f)) {}

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T const& value() const& { return std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  T const& operator*() const& { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  T const* operator->() const { return &std::get<0>(v_); }
  failure const& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, failure> v_;
};

struct ok_t {};
using status = result<ok_t>;
inline status ok() {
  return ok_t{};
}

}  // namespace petchat::errors
