#include "chat_tools.h"

#include <exception>
#include <stdexcept>

#include "chat.h"   // llama.cpp's common/chat.h
#include "errors.h"
#include "json.h"
#include "logging.h"

namespace mullama {

namespace {

common_chat_tool_choice tool_choice_of(const std::string & choice) {
    if (choice == "auto") return COMMON_CHAT_TOOL_CHOICE_AUTO;
    if (choice == "none") return COMMON_CHAT_TOOL_CHOICE_NONE;
    if (choice == "required") return COMMON_CHAT_TOOL_CHOICE_REQUIRED;
    raise(ErrorKind::InvalidArgument, "tool_choice must be auto, none or required (got '" + choice + "')");
}

}  // namespace

ChatPrompt apply_chat(const Model & model, const ChatInput & input) {
    common_chat_templates_inputs in;
    try {
        in.messages = common_chat_msgs_parse_oaicompat(common_json::parse(input.messages_json));
        if (!input.tools_json.empty()) in.tools = common_chat_tools_parse_oaicompat(common_json::parse(input.tools_json));
    } catch (const Error &) {
        throw;
    } catch (const std::exception & e) {
        raise(ErrorKind::InvalidArgument, std::string("invalid messages or tools: ") + e.what());
    }
    if (in.messages.empty()) raise(ErrorKind::InvalidArgument, "no messages to format");
    in.tool_choice = tool_choice_of(input.tool_choice);
    if (in.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED && in.tools.empty()) {
        raise(ErrorKind::InvalidArgument, "tool_choice 'required' needs at least one tool");
    }
    in.parallel_tool_calls = input.parallel_tool_calls;
    try {
        in.reasoning_format = common_reasoning_format_from_name(input.reasoning_format);
    } catch (const std::exception &) {
        raise(ErrorKind::InvalidArgument, "reasoning_format must be none, auto, deepseek or deepseek-legacy (got '" +
                                              input.reasoning_format + "')");
    }
    in.enable_thinking = input.enable_thinking;
    in.add_generation_prompt = input.add_generation_prompt;
    in.use_jinja = true;
    common_chat_params out;
    try {
        logging::Capture cap;
        out = common_chat_templates_apply(model.chat_templates().get(), in);
    } catch (const Error &) {
        throw;
    } catch (const std::invalid_argument & e) {
        raise(ErrorKind::InvalidArgument, std::string("cannot use these tools: ") + e.what());
    } catch (const std::exception & e) {
        raise(ErrorKind::TemplateError, std::string("cannot apply chat template: ") + e.what());
    }
    ChatPrompt p;
    p.prompt = std::move(out.prompt);
    p.grammar = std::move(out.grammar);
    p.grammar_lazy = out.grammar_lazy;
    for (const auto & t : out.grammar_triggers) p.triggers.emplace_back(static_cast<int32_t>(t.type), t.value);
    p.preserved_tokens = std::move(out.preserved_tokens);
    p.additional_stops = std::move(out.additional_stops);
    p.format = common_chat_format_name(out.format);
    p.generation_prompt = std::move(out.generation_prompt);
    p.parser = std::move(out.parser);
    if (p.grammar_lazy && p.triggers.empty()) {
        raise(ErrorKind::TemplateError, "the chat template gave a lazy tool-call grammar without triggers");
    }
    p.format_id = static_cast<int32_t>(out.format);
    p.supports_thinking = out.supports_thinking;
    p.thinking_start_tag = out.thinking_start_tag;
    p.thinking_end_tags = out.thinking_end_tags;
    p.reasoning_format = static_cast<int32_t>(in.reasoning_format);
    p.reasoning_in_content = in.reasoning_format == COMMON_REASONING_FORMAT_DEEPSEEK_LEGACY;
    return p;
}

std::map<std::string, bool> chat_caps(const Model & model) {
    auto caps = common_chat_templates_get_caps(model.chat_templates().get());
    caps["supports_thinking"] = chat_supports_thinking(model);
    return caps;
}

bool chat_supports_thinking(const Model & model) {
    try {
        logging::Capture cap;
        return common_chat_templates_support_enable_thinking(model.chat_templates().get());
    } catch (const std::exception &) {
        return false;  // a template that fails on a plain user turn thinks nothing we could read
    }
}

ChatParser::ChatParser(const ChatPrompt & prompt)
    : params_(std::make_unique<common_chat_parser_params>()), last_(std::make_unique<common_chat_msg>()) {
    params_->format = static_cast<common_chat_format>(prompt.format_id);
    params_->generation_prompt = prompt.generation_prompt;
    params_->parse_tool_calls = true;
    params_->reasoning_format = static_cast<common_reasoning_format>(prompt.reasoning_format);
    params_->reasoning_in_content = prompt.reasoning_in_content;
    if (!prompt.parser.empty()) params_->parser.load(prompt.parser);
}

ChatParser::~ChatParser() = default;

std::vector<ChatDelta> ChatParser::feed(const std::string & text, bool final) {
    common_chat_msg msg;
    try {
        msg = common_chat_parse(text, !final, *params_);
    } catch (const std::exception &) {
        if (!final) return {};                   // not readable yet: wait for more text
        msg = common_chat_msg();                 // unreadable at the end: it is all content
        msg.role = "assistant";
        msg.content = text;
    }
    if (msg.empty() && !final) return {};
    // tool-call ids are the supervisor's; keep ours empty so that diffs never flap on them
    for (auto & call : msg.tool_calls) call.id.clear();
    std::vector<common_chat_msg_diff> diffs;
    try {
        diffs = common_chat_msg_diff::compute_diffs(*last_, msg);
    } catch (const std::exception &) {
        // The new reading does not extend the last one (text read as content became part of a
        // call). Mid-stream: wait for more text. At the end: send the calls not sent yet, whole.
        if (!final) return {};
        for (size_t i = last_->tool_calls.size(); i < msg.tool_calls.size(); ++i) {
            common_chat_msg_diff d;
            d.tool_call_index = i;
            d.tool_call_delta = msg.tool_calls[i];
            diffs.push_back(std::move(d));
        }
    }
    std::vector<ChatDelta> out;
    for (const auto & d : diffs) {
        ChatDelta delta;
        delta.content = d.content_delta;
        delta.reasoning_content = d.reasoning_content_delta;
        if (d.tool_call_index != std::string::npos) {
            delta.tool_index = static_cast<int32_t>(d.tool_call_index);
            delta.name = d.tool_call_delta.name;
            delta.arguments = d.tool_call_delta.arguments;
        }
        out.push_back(std::move(delta));
    }
    *last_ = std::move(msg);
    return out;
}

std::vector<ChatDelta> ChatParser::append(const std::string & piece, bool final) {
    text_ += piece;
    return feed(text_, final);
}

ChatResult ChatParser::result() const {
    ChatResult r;
    r.content = last_->content;
    r.reasoning_content = last_->reasoning_content;
    for (const auto & c : last_->tool_calls) r.tool_calls.push_back({c.name, c.arguments, c.id});
    return r;
}

}  // namespace mullama
