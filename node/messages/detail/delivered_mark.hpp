// A user's delivered mark inside a write: the mailbox seq up to which their
// acknowledgements have delivered, and the group positions those acknowledgements reached
// (records::delivered_positions). The positions answer "did this member's acknowledgement
// deliver this group message?" with one read, for a member without a receipt record for it
// (their deliveries by acknowledgement are in delivered_batch records, not per member).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "node/messages/detail/conversations.hpp"

namespace petchat::messages::service_detail {

// Groups whose positions a mark keeps in itself; the others are under their own key.
inline constexpr int delivered_positions_kept = 8;

// What a stored mark holds after its 8-byte seq (nothing in a format-1 mark).
inline records::delivered_positions parse_delivered_positions(std::optional<std::string> const& raw) {
  records::delivered_positions positions;
  if (raw && raw->size() > 8) positions.ParseFromArray(raw->data() + 8, static_cast<int>(raw->size() - 8));
  return positions;
}

class delivered_mark {
 public:
  // `user`'s mark as the batch has it.
  delivered_mark(store::rocks_batch& b, std::string const& user) : b_(b), user_(user) {
    auto raw = b.get(cf::state, keys::delivered_key(user));
    if (!raw) return;
    seq_ = keys::from_be64(*raw);
    positions_ = parse_delivered_positions(raw);
  }

  std::uint64_t seq() const { return seq_; }
  void set_seq(std::uint64_t seq) { seq_ = seq; }
  // Where the mailbox entry holding seq() + 1 starts, if known to start before it (a run
  // the walk ended inside, detail/mailbox_runs.hpp); 0 otherwise.
  std::uint64_t next_entry() const { return positions_.next_entry(); }
  void set_next_entry(std::uint64_t seq) { positions_.set_next_entry(seq); }

  // `device`'s acknowledged position: in the mark if it acknowledged last, else its own key.
  std::uint64_t device_position(std::string const& device) const {
    return device_position_of(positions_, device, [&] { return b_.get(cf::state, keys::ack_key(user_, device)); });
  }
  // `device` acknowledged up to `seq`; the device that acknowledged before it, if another,
  // gets its position written under its own key.
  void set_device_position(std::string const& device, std::uint64_t seq) {
    if (!positions_.device().empty() && positions_.device() != device)
      b_.put(cf::state, keys::ack_key(user_, positions_.device()), keys::be64(positions_.device_seq()));
    positions_.set_device(device);
    positions_.set_device_seq(seq);
  }

  // The same as device_position, outside a write: from the committed mark `raw`.
  template <typename ReadKey>
  static std::uint64_t device_position(std::optional<std::string> const& raw, std::string const& device,
                                       ReadKey&& own_key) {
    return device_position_of(parse_delivered_positions(raw), device, own_key);
  }

  // The highest position of group `conv` delivered to the user by acknowledgement (0: none).
  std::uint64_t position(std::string const& conv) const {
    for (int i = 0; i < positions_.conversations_size(); ++i)
      if (positions_.conversations(i) == conv) return positions_.seqs(i);
    auto kept = b_.get(cf::state, keys::delivered_position_key(user_, conv));
    return kept ? keys::from_be64(*kept) : 0;
  }

  // The acknowledgement delivered the message at `seq` of group `conv`: the group becomes
  // the most recent in the list; the least recent one leaves it for its own key if full.
  void advance(std::string const& conv, std::uint64_t seq) {
    auto* convs = positions_.mutable_conversations();
    auto* seqs = positions_.mutable_seqs();
    int n = convs->size();
    int i = 0;
    while (i < n && convs->Get(i) != conv) ++i;
    if (i < n) {
      seq = std::max(seq, seqs->Get(i));
    } else if (n < delivered_positions_kept) {
      convs->Add(std::string(conv));
      seqs->Add(0);
      i = n++;
    } else {
      // Not for a group the user's part in is forgotten (left, and its retention passed:
      // forget_former_member erased its key then), or the key would stay for ever.
      auto const& least = convs->Get(0);
      if (b_.get(cf::conversations, keys::participant_key(user_, least)))
        b_.put(cf::state, keys::delivered_position_key(user_, least), keys::be64(seqs->Get(0)));
      i = 0;
      convs->Mutable(0)->assign(conv);
    }
    for (; i + 1 < n; ++i) {  // to the end, the others keeping their order
      convs->SwapElements(i, i + 1);
      seqs->SwapElements(i, i + 1);
    }
    seqs->Set(n - 1, seq);
  }

  void write() {
    auto value = keys::be64(seq_);
    if (positions_.conversations_size() > 0 || !positions_.device().empty() || positions_.next_entry() != 0)
      value += positions_.SerializeAsString();
    // Several acknowledgements of one user may share a group commit: written once.
    b_.put_last(cf::state, keys::delivered_key(user_), std::move(value));
  }

 private:
  template <typename ReadKey>
  static std::uint64_t device_position_of(records::delivered_positions const& positions, std::string const& device,
                                          ReadKey&& own_key) {
    if (!device.empty() && positions.device() == device) return positions.device_seq();
    auto v = own_key();
    return v ? keys::from_be64(*v) : 0;
  }

  store::rocks_batch& b_;
  std::string const& user_;
  std::uint64_t seq_ = 0;
  records::delivered_positions positions_;
};

}  // namespace petchat::messages::service_detail
