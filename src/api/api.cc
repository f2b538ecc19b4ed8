// Api: the application and the transport joined, with the admin token made on first start.
#include "api/api.h"

#include "api/app.h"

namespace venture::api {

Result<PatchReview> parse_patch_review(std::string_view text) {
  if (text == "agents") return PatchReview::kAgents;
  if (text == "all") return PatchReview::kAll;
  if (text == "none") return PatchReview::kNone;
  return invalid_argument_error("patch review must be agents, all or none");
}

Api::Api(storage::Store& store, bus::Bus& bus, engine::Engine& engine, base::Clock& clock,
         base::Random& random, ApiOptions options)
    : options_(std::move(options)), metrics_(std::make_unique<Metrics>()) {
  app_ = std::make_unique<App>(AppDeps{store, bus, engine, clock, random, *metrics_}, options_);
  server_ = std::make_unique<Server>(options_.server, *app_, store, bus, *metrics_, clock);
}

Api::~Api() { stop(); }

Status Api::start() {
  VENTURE_RETURN_IF_ERROR(app_->start());
  VENTURE_RETURN_IF_ERROR(server_->start());
  // The first API process of a deployment creates the admin token (engine and worker processes
  // serve no API and hold none).
  if (!options_.serve_api) return {};
  return app_->ensure_admin();
}

uint16_t Api::port() const { return server_->port(); }
void Api::stop_accepting() { server_->stop_accepting(); }
void Api::stop() {
  if (server_) server_->stop();
}
void Api::set_ready(bool ready) { app_->set_ready(ready); }
Metrics& Api::metrics() { return *metrics_; }

}  // namespace venture::api
