// The model's chat templates: the GGUF's own through llama.cpp's chat layer (Jinja), an override (Jinja
// source, or one of llama.cpp's built-in templates rendered by llama_chat_apply_template), and plain
// chats rendered with them.
#include <algorithm>
#include <vector>

#include "chat.h"
#include "errors.h"
#include "logging.h"
#include "model.h"

namespace mullama {

std::shared_ptr<common_chat_templates> Model::chat_templates() const {
    auto h = handle();
    std::lock_guard<std::mutex> lock(mutex_);
    // a built-in (non-Jinja) template knows no tools or thinking: the layer sees plain chatml for its caps
    if (!templates_) templates_ = common_chat_templates_init(h->get(), builtin_.empty() ? template_override_ : "chatml");
    return templates_;
}

std::vector<std::string> chat_template_names() {
    std::vector<const char *> names(static_cast<size_t>(llama_chat_builtin_templates(nullptr, 0)));
    llama_chat_builtin_templates(names.data(), names.size());
    return std::vector<std::string>(names.begin(), names.end());
}

void Model::set_chat_template(const std::string & jinja_or_name) {
    auto h = handle();
    const auto names = chat_template_names();
    const bool builtin = jinja_or_name != "chatml" &&
                         std::find(names.begin(), names.end(), jinja_or_name) != names.end();
    if (!builtin && jinja_or_name.find("{%") == std::string::npos && jinja_or_name.find("{{") == std::string::npos &&
        jinja_or_name != "chatml") {
        raise(ErrorKind::InvalidArgument, "chat template '" + jinja_or_name.substr(0, 64) +
                                              "' is neither Jinja nor one of llama.cpp's built-in names");
    }
    std::shared_ptr<common_chat_templates> made;
    if (!builtin) {
        logging::StderrCapture err;  // llama.cpp prints the parse error; the exception only says std::exception
        try {
            logging::Capture cap;
            made = common_chat_templates_init(h->get(), jinja_or_name);
        } catch (const std::exception & e) {
            const std::string printed = err.finish();
            const auto at = printed.find("error: ");
            const std::string why = at == std::string::npos ? e.what()
                                                             : printed.substr(at + 7, printed.find('\n', at) - at - 7);
            raise(ErrorKind::TemplateError, "cannot use this chat template: " + why);
        }
        err.finish();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    template_override_ = builtin ? "" : jinja_or_name;
    builtin_ = builtin ? jinja_or_name : "";
    templates_ = std::move(made);  // built-in: made on first use (chatml, for the caps)
}

std::string Model::apply_chat_template(const std::vector<ChatMessage> & messages, bool add_generation_prompt,
                                       const std::string & template_override) const {
    auto h = handle();
    if (messages.empty()) {
        raise(ErrorKind::TemplateError, "no messages to format");
    }
    std::string builtin;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        builtin = builtin_;
    }
    if (!template_override.empty()) {  // a built-in's name given per request (a preset's template)
        const auto names = chat_template_names();
        if (std::find(names.begin(), names.end(), template_override) != names.end()) builtin = template_override;
    }
    if (!builtin.empty() && (template_override.empty() || template_override == builtin)) {
        std::vector<llama_chat_message> chat;
        for (const auto & m : messages) chat.push_back({m.role.c_str(), m.content.c_str()});
        std::vector<char> buf(4096);
        int32_t n = llama_chat_apply_template(builtin.c_str(), chat.data(), chat.size(), add_generation_prompt,
                                              buf.data(), static_cast<int32_t>(buf.size()));
        if (n > static_cast<int32_t>(buf.size())) {
            buf.resize(static_cast<size_t>(n));
            n = llama_chat_apply_template(builtin.c_str(), chat.data(), chat.size(), add_generation_prompt, buf.data(),
                                          static_cast<int32_t>(buf.size()));
        }
        if (n < 0) raise(ErrorKind::TemplateError, "cannot apply the built-in chat template '" + builtin + "'");
        return std::string(buf.data(), static_cast<size_t>(n));
    }
    try {
        std::shared_ptr<common_chat_templates> tmpls =
            template_override.empty() ? chat_templates() : std::shared_ptr<common_chat_templates>(
                                                                common_chat_templates_init(h->get(), template_override));
        common_chat_templates_inputs inputs;
        inputs.add_generation_prompt = add_generation_prompt;
        inputs.use_jinja = true;
        for (const auto & m : messages) {
            common_chat_msg msg;
            msg.role = m.role;
            msg.content = m.content;
            inputs.messages.push_back(std::move(msg));
        }
        return common_chat_templates_apply(tmpls.get(), inputs).prompt;
    } catch (const Error &) {
        throw;
    } catch (const std::exception & e) {
        raise(ErrorKind::TemplateError, std::string("cannot apply chat template: ") + e.what());
    }
}

}  // namespace mullama
