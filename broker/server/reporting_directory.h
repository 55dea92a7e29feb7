// ReportingDirectory: a ServiceDirectory for tests of the request handler,
// dispatch and the loop, which reports what it is given and hosts nothing
// (a test overrides what it wants to see).
#ifndef CAPBROKER_BROKER_SERVER_REPORTING_DIRECTORY_H_
#define CAPBROKER_BROKER_SERVER_REPORTING_DIRECTORY_H_

#include <optional>
#include <vector>

#include "broker/server/service_directory.h"

namespace capbroker::server {

// Reports `reports`, as they are; every connect is refused ("not hosted").
class ReportingDirectory : public ServiceDirectory {
 public:
  absl::StatusOr<std::optional<UniqueFd>> Connect(const ServiceSpec&,
                                                   const ConnectRequest&) override {
    return absl::UnavailableError("not hosted");
  }
  void Withdraw(uint64_t, uint64_t) override {}
  void ConnectionLost(uint64_t) override {}
  void ClientGone(uint64_t, absl::string_view) override {}
  absl::Status Ready(absl::string_view) override { return absl::OkStatus(); }
  void AnswerWaiting(absl::string_view) override {}
  std::vector<ServiceReport> Report() const override { return reports; }

  std::vector<ServiceReport> reports;
};

}  // namespace capbroker::server

#endif  // CAPBROKER_BROKER_SERVER_REPORTING_DIRECTORY_H_
