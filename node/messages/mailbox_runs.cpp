// A member's mailbox events of group messages, kept in runs (detail/mailbox_runs.hpp):
// appended within a write, and erased one by one when their message goes.
#include "node/messages/detail/service.hpp"

namespace petchat::messages {

std::uint64_t message_service::impl::append_group_entry(store::rocks_batch& b, std::string const& user,
                                                        records::stored_event const& e,
                                                        records::fanout_record& fan) const {
  auto remembered = b.recall(cf::state, keys::head_key(user), [&] { return keys::be64(stored_head(user)); });
  std::uint64_t head = keys::from_be64(remembered);
  std::uint64_t seq = head + 1;
  std::uint64_t first = seq;
  // The remembered head: its 8-byte seq, and, when this batch started a run that ends at
  // it, how far back the run starts (1 byte) and the batch (the generation's low 4 bytes;
  // 13 bytes in all, short enough to need no allocation).
  auto const generation = static_cast<std::uint32_t>(b.generation());
  std::optional<std::string> run;
  if (remembered.size() == 13 && static_cast<std::uint32_t>(keys::from_be64(remembered.substr(9))) == generation &&
      std::uint64_t{static_cast<unsigned char>(remembered[8])} + 1 < keys::max_run) {
    first = head - static_cast<unsigned char>(remembered[8]);
    run = b.get(cf::mailbox, keys::mailbox_key(user, first));
  }
  if (run) {
    keys::extend_run(*run, e);
  } else {
    first = seq;
    run = e.SerializeAsString();
  }
  b.put_last(cf::mailbox, keys::mailbox_key(user, first), std::move(*run));
  remembered = keys::be64(seq);
  remembered += static_cast<char>(seq - first);
  for (int shift = 24; shift >= 0; shift -= 8) remembered += static_cast<char>((generation >> shift) & 0xff);
  b.remember(cf::state, keys::head_key(user), std::move(remembered));
  if (push.wants(user)) note_push(b, user, seq);
  auto* ref = fan.add_mailbox_entries();
  ref->set_user(user);
  ref->set_seq(seq);
  ref->set_run(first);
  return seq;
}

void message_service::impl::erase_mailbox_event(store::rocks_batch& b, records::mailbox_ref const& ref,
                                                std::set<std::string>& floored) const {
  if (ref.run() == 0) return erase_mailbox_entry(b, keys::mailbox_key(ref.user(), ref.seq()), floored);
  auto key = keys::mailbox_key(ref.user(), ref.run());
  auto run = b.get(cf::mailbox, key);
  if (!run) return;
  if (floored.insert(ref.user()).second) b.put(cf::state, keys::head_key(ref.user()), keys::be64(head(b, ref.user())));
  if (keys::erase_from_run(*run, ref.run(), ref.seq()))
    b.put_last(cf::mailbox, key, *run);
  else
    b.erase(cf::mailbox, key);
}

}  // namespace petchat::messages
