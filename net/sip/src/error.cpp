// Reason strings and suggested replies for edge::sip::Error.
#include "edge/net/sip/error.h"

namespace edge::sip {

std::string_view reason(Error e) noexcept {
  switch (e) {
    case Error::ok:
      return "ok";
    case Error::empty_message:
      return "empty message";
    case Error::bad_start_line:
      return "malformed start line";
    case Error::bad_method:
      return "malformed method";
    case Error::bad_request_uri:
      return "malformed Request-URI";
    case Error::bad_version:
      return "unsupported SIP version";
    case Error::bad_status_code:
      return "malformed status code";
    case Error::bad_reason_phrase:
      return "malformed reason phrase";
    case Error::bad_line_ending:
      return "line not ended by CRLF";
    case Error::control_character:
      return "control character in message";
    case Error::invalid_utf8:
      return "invalid UTF-8";
    case Error::bad_header_name:
      return "malformed header name";
    case Error::missing_colon:
      return "header line without colon";
    case Error::bad_folding:
      return "continuation line without a header";
    case Error::header_line_too_long:
      return "header line too long";
    case Error::too_many_headers:
      return "too many headers";
    case Error::message_too_large:
      return "message too large";
    case Error::headers_incomplete:
      return "header section not terminated";
    case Error::duplicate_header:
      return "duplicate single-valued header";
    case Error::missing_header:
      return "missing mandatory header";
    case Error::missing_content_length:
      return "missing Content-Length on a stream";
    case Error::bad_content_length:
      return "malformed Content-Length";
    case Error::content_length_too_large:
      return "Content-Length over the limit";
    case Error::conflicting_content_length:
      return "conflicting Content-Length values";
    case Error::body_truncated:
      return "body shorter than Content-Length";
    case Error::bad_cseq:
      return "malformed CSeq";
    case Error::cseq_method_mismatch:
      return "CSeq method differs from request method";
    case Error::bad_max_forwards:
      return "malformed Max-Forwards";
    case Error::bad_flow_timer:
      return "malformed Flow-Timer";
    case Error::bad_call_id:
      return "malformed Call-ID";
    case Error::bad_uri:
      return "malformed URI";
    case Error::unsupported_scheme:
      return "unsupported URI scheme";
    case Error::bad_via:
      return "malformed Via";
    case Error::bad_name_addr:
      return "malformed name-addr";
    case Error::bad_param:
      return "malformed parameter";
    case Error::bad_contact:
      return "malformed Contact";
    case Error::no_such_header:
      return "no such header";
    case Error::edit_overlap:
      return "edits overlap";
    case Error::too_many_edits:
      return "too many edits";
    case Error::bad_edit_input:
      return "invalid text for an edit";
    case Error::max_forwards_exhausted:
      return "Max-Forwards is zero";
    case Error::not_a_request:
      return "not a request";
    case Error::not_a_response:
      return "not a response";
  }
  return "unknown error";
}

int suggested_status(Error e) noexcept {
  switch (e) {
    case Error::ok:
    case Error::no_such_header:
    case Error::edit_overlap:
    case Error::too_many_edits:
    case Error::bad_edit_input:
    case Error::not_a_request:
    case Error::not_a_response:
      return 0;
    case Error::bad_version:
      return 505;
    case Error::message_too_large:
    case Error::content_length_too_large:
      return 513;
    case Error::max_forwards_exhausted:
      return 483;
    case Error::unsupported_scheme:
      return 416;
    default:
      return 400;
  }
}

}  // namespace edge::sip
