#include "node/errors/errors.hpp"

#include <array>

namespace petchat::errors {
namespace {

struct entry {
  char const* name;
  unsigned status;
};

// Indexed by `code`; keep in the enum's order (checked below).
constexpr std::array<entry, 68> table{{
    {"bad_request", 400},                 // code::bad_request
    {"invalid_json", 400},                // code::invalid_json
    {"missing_field", 400},               // code::missing_field
    {"invalid_field", 400},               // code::invalid_field
    {"invalid_name", 400},                // code::invalid_name
    {"weak_password", 400},               // code::weak_password
    {"missing_token", 401},               // code::missing_token
    {"invalid_token", 401},               // code::invalid_token
    {"token_expired", 401},               // code::token_expired
    {"session_revoked", 401},             // code::session_revoked
    {"invalid_credentials", 401},         // code::invalid_credentials
    {"invalid_refresh_token", 401},       // code::invalid_refresh_token
    {"refresh_token_reused", 401},        // code::refresh_token_reused
    {"user_disabled", 403},               // code::user_disabled
    {"registration_closed", 403},         // code::registration_closed
    {"invalid_registration_token", 403},  // code::invalid_registration_token
    {"not_found", 404},                   // code::not_found
    {"user_not_found", 404},              // code::user_not_found
    {"session_not_found", 404},           // code::session_not_found
    {"method_not_allowed", 405},          // code::method_not_allowed
    {"request_timeout", 408},             // code::request_timeout
    {"name_taken", 409},                  // code::name_taken
    {"body_too_large", 413},              // code::body_too_large
    {"rate_limited", 429},                // code::rate_limited
    {"header_too_large", 431},            // code::header_too_large
    {"internal", 500},                    // code::internal
    {"shutting_down", 503},               // code::shutting_down
    {"not_a_member", 403},                // code::not_a_member
    {"not_sender", 403},                  // code::not_sender
    {"delete_window_passed", 403},        // code::delete_window_passed
    {"presence_hidden", 403},             // code::presence_hidden
    {"conversation_not_found", 404},      // code::conversation_not_found
    {"message_not_found", 404},           // code::message_not_found
    {"malformed_frame", 400},             // code::malformed_frame
    {"unknown_frame", 400},               // code::unknown_frame
    {"frame_too_large", 413},             // code::frame_too_large
    {"not_authenticated", 401},           // code::not_authenticated
    {"too_many_streams", 429},            // code::too_many_streams
    {"forbidden_role", 403},              // code::forbidden_role
    {"owner_must_hand_over", 409},        // code::owner_must_hand_over
    {"group_full", 409},                  // code::group_full
    {"too_many_groups", 409},             // code::too_many_groups
    {"already_member", 409},              // code::already_member
    {"group_adds_restricted", 403},       // code::group_adds_restricted
    {"asset_not_found", 404},             // code::asset_not_found
    {"upload_not_found", 404},            // code::upload_not_found
    {"offset_mismatch", 409},             // code::offset_mismatch
    {"upload_busy", 409},                 // code::upload_busy
    {"length_required", 411},             // code::length_required
    {"asset_too_large", 413},             // code::asset_too_large
    {"quota_exceeded", 413},              // code::quota_exceeded
    {"upload_overflow", 413},             // code::upload_overflow
    {"range_not_satisfiable", 416},       // code::range_not_satisfiable
    {"too_many_uploads", 429},            // code::too_many_uploads
    {"hash_mismatch", 400},               // code::hash_mismatch
    {"asset_pending", 503},               // code::asset_pending
    {"push_endpoint_forbidden", 400},     // code::push_endpoint_forbidden
    {"push_target_not_found", 404},       // code::push_target_not_found
    {"too_many_push_targets", 409},       // code::too_many_push_targets
    {"push_disabled", 503},               // code::push_disabled
    {"too_many_connections", 503},        // code::too_many_connections
    {"cors_origin_forbidden", 403},       // code::cors_origin_forbidden
    {"unsupported_media_type", 415},      // code::unsupported_media_type
    {"config_invalid", 400},              // code::config_invalid
    {"backup_in_progress", 409},          // code::backup_in_progress
    {"region_listed", 409},               // code::region_listed
    {"store_unavailable", 503},           // code::store_unavailable
    {"wrong_password", 403},              // code::wrong_password
}};
static_assert(static_cast<std::size_t>(code::wrong_password) + 1 == table.size(), "one entry per code, in order");

}  // namespace

char const* name(code c) noexcept {
  auto i = static_cast<std::size_t>(c);
  return i < table.size() ? table[i].name : "internal";
}

unsigned http_status(code c) noexcept {
  auto i = static_cast<std::size_t>(c);
  return i < table.size() ? table[i].status : 500;
}

}  // namespace petchat::errors
