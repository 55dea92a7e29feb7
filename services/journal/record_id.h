// RecordId: where a journal record went; shared by the journal and its
// clients.
#ifndef CAPBROKER_SERVICES_JOURNAL_RECORD_ID_H_
#define CAPBROKER_SERVICES_JOURNAL_RECORD_ID_H_

#include <cstdint>

namespace capbroker::journal {

struct RecordId {
  uint64_t run = 0;  // the journal's start time, ns since the epoch
  uint64_t seq = 0;  // 1, 2, ... within the run
};

}  // namespace capbroker::journal

#endif  // CAPBROKER_SERVICES_JOURNAL_RECORD_ID_H_
