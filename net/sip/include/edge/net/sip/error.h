// Typed outcomes of SIP parsing, framing and editing: one enum, a reason string, a suggested reply.
#pragma once

#include <cstdint>
#include <string_view>

namespace edge::sip {

// Per-message failures are ordinary outcomes on the data path, so they are values, not exceptions.
enum class Error : std::uint8_t {
  ok = 0,
  // start line
  empty_message,
  bad_start_line,
  bad_method,
  bad_request_uri,
  bad_version,
  bad_status_code,
  bad_reason_phrase,
  // header section
  bad_line_ending,
  control_character,
  invalid_utf8,
  bad_header_name,
  missing_colon,
  bad_folding,
  header_line_too_long,
  too_many_headers,
  message_too_large,
  headers_incomplete,
  // single-valued and mandatory headers
  duplicate_header,
  missing_header,
  missing_content_length,
  bad_content_length,
  content_length_too_large,
  conflicting_content_length,
  body_truncated,
  bad_cseq,
  cseq_method_mismatch,
  bad_max_forwards,
  bad_flow_timer,
  bad_call_id,
  // structured values (accessors)
  bad_uri,
  unsupported_scheme,
  bad_via,
  bad_name_addr,
  bad_param,
  bad_contact,
  // editor / builder
  no_such_header,
  edit_overlap,
  too_many_edits,
  bad_edit_input,
  max_forwards_exhausted,
  not_a_request,
  not_a_response,
};

// A short, stable, log-friendly reason ("duplicate single-valued header").
std::string_view reason(Error e) noexcept;

// The status a server answers a request that failed with `e` (400, 505, 513); 0 when the
// error is not a property of a received message (editor misuse).
int suggested_status(Error e) noexcept;

}  // namespace edge::sip
