// Writes the files generated from the config schema (`meson compile -C build
// generate`), or with --check fails when a committed one is out of date.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "config/schema.hpp"

namespace {

struct Generated {
    const char* path;  // relative to the source root
    std::string content;
};

std::string read(const std::string& path)
{
    std::ifstream file(path, std::ios::binary);
    std::ostringstream content;
    content << file.rdbuf();
    return content.str();
}

}  // namespace

int main(int argc, char** argv)
{
    const std::string usage = "usage: cim-leaf-generate SOURCE_ROOT [--check]";
    if (argc < 2 || argc > 3 || (argc == 3 && std::string(argv[2]) != "--check")) {
        std::cerr << usage << "\n";
        return 2;
    }
    const std::string root = argv[1];
    const bool check = argc == 3;
    const Generated files[] = {
        {"proto/config.schema.json", cim::config::json_schema().dump(2) + "\n"},
        {"nixos-module/options.nix", cim::config::nix_options()},
    };
    int stale = 0;
    for (const auto& file : files) {
        const std::string path = root + "/" + file.path;
        if (check) {
            if (read(path) != file.content) {
                std::cerr << file.path << " is out of date: run `meson compile -C build generate` and commit it\n";
                ++stale;
            }
        } else if (!(std::ofstream(path, std::ios::binary) << file.content)) {
            std::cerr << "cannot write " << path << "\n";
            return 1;
        }
    }
    return stale ? 1 : 0;
}
