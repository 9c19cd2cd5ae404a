// A member's mailbox events of group messages, kept in runs (detail/mailbox_runs.hpp):
// appended within a write, and erased one by one when their message goes.
#include "node/messages/detail/service.hpp"

namespace petchat::messages {

std::uint64_t message_service::impl::append_group_entry(store::rocks_batch& b, std::string const& user,
                                                        records::stored_event const& e,
                                                        records::fanout_record& fan) const {
  auto remembered = b.recall(cf::state, keys::head_key(user), [&] { return keys::be64(stored_head(user)); });
  std::uint64_t seq = keys::from_be64(remembered) + 1;
  std::uint64_t first = seq;
  std::optional<std::string> run;
  if (remembered.size() == 24 && keys::from_be64(remembered.substr(16)) == b.generation()) {
    first = keys::from_be64(remembered.substr(8, 8));
    if (seq - first < keys::max_run) run = b.get(cf::mailbox, keys::mailbox_key(user, first));
  }
  if (run) {
    keys::extend_run(*run, e);
  } else {
    first = seq;
    run = e.SerializeAsString();
  }
  b.put_last(cf::mailbox, keys::mailbox_key(user, first), *run);
  b.remember(cf::state, keys::head_key(user), keys::be64(seq) + keys::be64(first) + keys::be64(b.generation()));
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
