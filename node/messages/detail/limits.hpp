// How far the message service's walks over the store go, and the clock skew it allows
// between regions: the bounds that keep one request's work independent of a mailbox's or
// a group's size.
#pragma once

#include <cstddef>
#include <cstdint>

namespace petchat::messages::service_detail {

// Mailbox events one acknowledgement write looks at, at most (see message_service::ack).
inline constexpr std::uint64_t max_ack_walk = 1024;
// Messages one read loads, at most (see mark_read); and history entries it passes over that
// name the reader as their sender (no message loaded), at most.
inline constexpr std::size_t max_read_walk = 2000;
inline constexpr std::size_t max_read_walk_own = 64 * 1024;
// History walks stop after this many messages in a row from before the reader's period
// (reads.cpp).
inline constexpr std::size_t max_outside = 1000;
// ... and after this many in a row the reader may not see (hidden for them, expired and not
// swept yet): one who hid a whole conversation must not make each page walk all of it.
inline constexpr std::size_t max_unseen = 10000;
// ... and after loading this many bytes of messages in a row that it may not see (10,000
// messages of 16 KiB each cost seconds to parse).
inline constexpr std::size_t max_unseen_bytes = 8 << 20;
// A history page, and a page of the conversation list, ends once its messages come to
// about this many bytes of JSON (detail::json_cost): 200 messages of 4 KiB text, 16 KiB
// content and 10 attachments would be some 6 MiB of JSON (and six times that with text a
// sender filled with characters JSON escapes), held per connection until a slow reader
// takes it.
inline constexpr std::size_t max_page_bytes = 1 << 20;
// The clock skew allowed between regions: a removed member's late messages (group_remote.cpp),
// and how far after leaving a former member's history walks look (reads.cpp).
inline constexpr std::int64_t max_skew_ms = 5 * 60 * 1000;

// A time another region states (a receipt's), as far as this one can believe it: not
// before `not_before` (the message was sent), not after `now` and the skew (0, or a time
// in the future, would read as "not yet" or reorder what the sender sees).
inline std::int64_t plausible_time(std::int64_t at, std::int64_t not_before, std::int64_t now) {
  if (at <= 0 || at > now + max_skew_ms) return now;
  return at < not_before ? not_before : at;
}

// A message from another region made (its id's time) or sent after this region's clock and
// the skew: refused, or it would stay the newest of its conversation for as long as its
// region cared to date it ahead (a client orders by id).
inline bool ahead_of_clock(std::int64_t id_ms, std::int64_t sent_at_ms, std::int64_t now) {
  return id_ms > now + max_skew_ms || sent_at_ms > now + max_skew_ms;
}

}  // namespace petchat::messages::service_detail
