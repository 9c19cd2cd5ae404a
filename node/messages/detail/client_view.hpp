// What a client sees of the store: a stored event as a client event, message ids printed
// (base64url) and parsed back. Shared by the message service's translation units.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "base/format/format.hpp"
#include "client.pb.h"
#include "message_records.pb.h"

namespace petchat::messages::service_detail {

inline constexpr std::size_t message_id_bytes = 16;

// The client's view of a stored event. Message events carry only the message id in the
// store: `message` supplies the content (false if it is missing, e.g. expired).
inline bool to_client_event(records::stored_event const& e, std::optional<client::message> message,
                            client::event& out) {
  switch (e.kind_case()) {
    case records::stored_event::kMessageId:
      if (!message) return false;
      *out.mutable_message() = std::move(*message);
      return true;
    case records::stored_event::kReceipt:
      *out.mutable_receipt() = e.receipt();
      return true;
    case records::stored_event::kReadMark:
      *out.mutable_read_mark() = e.read_mark();
      return true;
    case records::stored_event::kDeleted:
      *out.mutable_deleted() = e.deleted();
      return true;
    case records::stored_event::kConversationChange:
      *out.mutable_conversation_change() = e.conversation_change();
      return true;
    case records::stored_event::kRequestRefused:
      *out.mutable_request_refused() = e.request_refused();
      return true;
    default:
      return false;
  }
}
inline constexpr std::size_t max_client_id = 64;

inline std::string print_id(std::string const& raw) {
  return format::base64url(raw);
}

inline std::optional<std::string> parse_id(std::string const& printed) {
  auto raw = format::from_base64url(printed);
  if (!raw || raw->size() != message_id_bytes) return std::nullopt;
  return raw;
}

}  // namespace petchat::messages::service_detail
