// Mailbox runs (format 3): several consecutive events of one mailbox stored under one key.
//
// A mailbox key `user NUL seq` holds a stored_event; its `then` events are the events at
// seq + 1, seq + 2, ... (a run). A member's events of the group messages sent in one group
// commit form one run, so that a 1,000-member group's messages cost one mailbox key per
// member per commit, not per message. Runs are at most max_run events long: the run that
// holds a seq starts at most max_run - 1 seqs before it, which bounds every look-up.
// An erased event of a run stays in it without a kind (a gap, as after an erased entry),
// and the key goes with the run's last event.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "message_records.pb.h"

namespace petchat::messages::detail {

inline constexpr std::uint64_t max_run = 16;

// The smallest seq at which a run holding `seq` can start.
inline std::uint64_t earliest_run_start(std::uint64_t seq) {
  return seq > max_run ? seq - max_run + 1 : 1;
}

// The events of the entry at `first` (its key's seq), by seq: f(seq, event) for each, while
// f returns true (an erased event has no kind). False if the value does not parse.
template <class F>
bool each_run_event(std::uint64_t first, std::string_view value, F&& f) {
  records::stored_event e;
  if (!e.ParseFromArray(value.data(), static_cast<int>(value.size()))) return false;
  if (!f(first, static_cast<records::stored_event const&>(e))) return true;
  for (int i = 0; i < e.then_size(); ++i)
    if (!f(first + 1 + std::uint64_t(i), e.then(i))) return true;
  return true;
}

// How many seqs the entry covers (1 for an entry that is not a run, or does not parse).
inline std::uint64_t run_length(std::string_view value) {
  records::stored_event e;
  if (!e.ParseFromArray(value.data(), static_cast<int>(value.size()))) return 1;
  return 1 + std::uint64_t(e.then_size());
}

// Appends `next` to the run `value` (its serialized bytes): a `then` field, as protobuf
// concatenates repeated fields.
inline void extend_run(std::string& value, records::stored_event const& next) {
  records::stored_event wrapper;
  *wrapper.add_then() = next;
  value += wrapper.SerializeAsString();
}

// Erases the event at `seq` from the run `value` that starts at `first`. Returns false when
// nothing of the run is left (the key goes), else true with `value` rewritten.
inline bool erase_from_run(std::string& value, std::uint64_t first, std::uint64_t seq) {
  records::stored_event e;
  if (!e.ParseFromString(value)) return false;
  if (seq == first)
    e.clear_kind();
  else if (seq > first && seq - first <= std::uint64_t(e.then_size()))
    e.mutable_then(static_cast<int>(seq - first - 1))->clear_kind();
  bool any = e.kind_case() != records::stored_event::KIND_NOT_SET;
  for (auto const& t : e.then()) any = any || t.kind_case() != records::stored_event::KIND_NOT_SET;
  if (!any) return false;
  value = e.SerializeAsString();
  return true;
}

}  // namespace petchat::messages::detail
