#include "node/errors/errors.hpp"

namespace petchat::errors {

char const* name(code c) noexcept {
  switch (c) {
    case code::bad_request:
      return "bad_request";
    case code::invalid_json:
      return "invalid_json";
    case code::missing_field:
      return "missing_field";
    case code::invalid_field:
      return "invalid_field";
    case code::invalid_name:
      return "invalid_name";
    case code::weak_password:
      return "weak_password";
    case code::missing_token:
      return "missing_token";
    case code::invalid_token:
      return "invalid_token";
    case code::token_expired:
      return "token_expired";
    case code::session_revoked:
      return "session_revoked";
    case code::invalid_credentials:
      return "invalid_credentials";
    case code::invalid_refresh_token:
      return "invalid_refresh_token";
    case code::refresh_token_reused:
      return "refresh_token_reused";
    case code::user_disabled:
      return "user_disabled";
    case code::registration_closed:
      return "registration_closed";
    case code::invalid_registration_token:
      return "invalid_registration_token";
    case code::not_found:
      return "not_found";
    case code::user_not_found:
      return "user_not_found";
    case code::session_not_found:
      return "session_not_found";
    case code::method_not_allowed:
      return "method_not_allowed";
    case code::request_timeout:
      return "request_timeout";
    case code::name_taken:
      return "name_taken";
    case code::body_too_large:
      return "body_too_large";
    case code::rate_limited:
      return "rate_limited";
    case code::header_too_large:
      return "header_too_large";
    case code::internal:
      return "internal";
    case code::shutting_down:
      return "shutting_down";
  }
  return "internal";
}

unsigned http_status(code c) noexcept {
  switch (c) {
    case code::bad_request:
    case code::invalid_json:
    case code::missing_field:
    case code::invalid_field:
    case code::invalid_name:
    case code::weak_password:
      return 400;
    case code::missing_token:
    case code::invalid_token:
    case code::token_expired:
    case code::session_revoked:
    case code::invalid_credentials:
    case code::invalid_refresh_token:
    case code::refresh_token_reused:
      return 401;
    case code::user_disabled:
    case code::registration_closed:
    case code::invalid_registration_token:
      return 403;
    case code::not_found:
    case code::user_not_found:
    case code::session_not_found:
      return 404;
    case code::method_not_allowed:
      return 405;
    case code::request_timeout:
      return 408;
    case code::name_taken:
      return 409;
    case code::body_too_large:
      return 413;
    case code::rate_limited:
      return 429;
    case code::header_too_large:
      return 431;
    case code::internal:
      return 500;
    case code::shutting_down:
      return 503;
  }
  return 500;
}

}  // namespace petchat::errors
