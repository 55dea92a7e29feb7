// Store: a persistent key-value store in a directory, reached only through
// the directory's fd (openat, renameat, unlinkat, fsync), as a sandboxed
// service must.
//
// One file per key (key_name.h), holding the value's bytes. Durability:
// Put writes the value to a new temporary file (O_CREAT | O_EXCL), fsyncs
// it, renames it onto the key's file (atomic: a reader, or the store after
// a crash, sees the old value or the new, never a mix), and fsyncs the
// directory so that the rename itself is on disk; only then does it
// return OK. Delete unlinks and fsyncs the directory. A crash at any point
// loses nothing that was acknowledged: it can leave only a temporary file,
// which Open removes.
//
// One Store per directory: Open takes an exclusive flock on the directory
// fd, and a second Store (another service instance) is refused rather than
// allowed to race the first. The store therefore keeps its keys in memory
// too, sorted, read once by Open and kept current by Put and Delete, so that
// listing never reads the directory (a list page would otherwise read and
// sort up to Options::max_keys names). Not thread-safe.
#ifndef CAPBROKER_SERVICES_KVSTORE_STORE_H_
#define CAPBROKER_SERVICES_KVSTORE_STORE_H_

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/unique_fd.h"
#include "services/kvstore/key_name.h"
#include "services/kvstore/value_limit.h"

namespace capbroker::kvstore {

// The name of the store's grant unless the service's command says
// --grant=NAME.
inline constexpr char kDefaultGrant[] = "data";

// The most entries other than key files that Open reads in the store's
// directory (temporary files, which it removes, and anything else, which
// it leaves): a store makes at most one temporary file at a time, so a
// directory with more was filled from elsewhere.
inline constexpr size_t kMaxOtherEntries = 1000;

class Store {
 public:
  struct Options {
    // Puts of new keys beyond this many are refused (kResourceExhausted);
    // at most kMaxKeys, which is what a client takes in a list.
    size_t max_keys = kMaxKeys;
  };

  // Takes `dir`, a directory fd with write access beneath it (the grant
  // named `grant`, which messages name it by: "kv-data: not a directory",
  // "kv-data/k.61"), locks it, checks that this process can create files
  // in it, removes stale temporary files, and reads the keys.
  // kFailedPrecondition when `dir` is not a directory, another Store holds
  // it, or this process's uid cannot create files in it (said with the
  // uid, since a service that started would only fail each put with
  // EACCES), or the directory holds more than options.max_keys key files
  // or more than kMaxOtherEntries other entries ("." and ".." aside);
  // kInvalidArgument when options.max_keys is over kMaxKeys.
  static absl::StatusOr<Store> Open(UniqueFd dir, absl::string_view grant, Options options);
  static absl::StatusOr<Store> Open(UniqueFd dir, absl::string_view grant = kDefaultGrant) {
    return Open(std::move(dir), grant, Options());
  }

  Store(Store&&) = default;
  Store& operator=(Store&&) = default;

  // Sets `key` to `value`, durably (see above). kInvalidArgument /
  // kResourceExhausted for a bad key, a value over kMaxValueBytes, or a new
  // key beyond Options::max_keys (the store is left as it was);
  // kResourceExhausted too for a full disk or a value past the file size
  // limit (RLIMIT_FSIZE: EFBIG, with SIGXFSZ ignored, as
  // Service::FromEnvironment does; the old value stays). kDataLoss when
  // only the last fsync (the directory's) failed: the new value is in
  // place, and Get returns it, but it may not survive a crash.
  absl::Status Put(absl::string_view key, absl::string_view value);

  // kNotFound when `key` has no value.
  absl::StatusOr<std::string> Get(absl::string_view key);

  // kNotFound when `key` has no value. kDataLoss when only the directory's
  // fsync failed: the key is removed, but may come back after a crash.
  absl::Status Delete(absl::string_view key);

  // Every key, in bytewise order, from memory: valid until the next Put or
  // Delete.
  const std::set<std::string>& keys() const { return keys_; }

  size_t size() const { return keys_.size(); }

 private:
  Store(UniqueFd dir, std::string grant, Options options)
      : dir_(std::move(dir)), grant_(std::move(grant)), options_(options) {}

  // A new temporary file's name: unique within this process's life (its
  // pid and a counter), and across runs (the time; the pid alone repeats
  // from run to run in a pid namespace).
  absl::StatusOr<std::string> TempName();
  // Creates a file in the directory and removes it; kFailedPrecondition
  // describing the directory and this process's uid when it cannot.
  absl::Status CheckWritable();
  // Reads the directory's keys into keys_ and removes its temporary files,
  // within options_.max_keys and kMaxOtherEntries (kFailedPrecondition).
  absl::Status ReadKeys();
  absl::Status SyncDirectory();
  // SyncDirectory after a change (`done` says which) was made:
  // kDataLoss, saying it was made, when the sync fails.
  absl::Status SyncChange(absl::string_view done);

  UniqueFd dir_;
  std::string grant_;  // for messages
  Options options_;
  // std::string orders bytewise (as unsigned char), as the protocol does.
  std::set<std::string> keys_;
  uint64_t temp_counter_ = 0;
};

}  // namespace capbroker::kvstore

#endif  // CAPBROKER_SERVICES_KVSTORE_STORE_H_
