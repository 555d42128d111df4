"""Generate a fleet survey as CSV for `enos-connect recommend --batch`: N rows, answers drawn
at random and needs from a set of typical device profiles (a survey repeats device models).
With --random, rows look like a user's own fleet and rarely repeat, the hard case for the
decision cache: the needs are a random subset of every feature in random order, and a third
of the answers that have a default (third_party_cloud, constrained, long_connection) are left
empty, so the default applies, as people leave out what they do not know."""
import random
import sys

PROFILES = [
    "report_data", "report_data;ota", "report_data;downlink_commands", "file_upload",
    "ota;file_upload", "report_data;batch_offline_points", "subdevice_management;report_data",
    "passthrough_up;passthrough_down", "dynamic_auth;report_data", "mutual_tls;report_data;ota",
    "static_auth", "", "report_data;file_upload", "downlink_commands;ota",
]


FEATURES = [
    "static_auth", "dynamic_auth", "mutual_tls", "report_data", "passthrough_up", "file_upload",
    "batch_offline_points", "downlink_commands", "passthrough_down", "subdevice_management", "ota",
]


def main():
    args = [a for a in sys.argv[1:] if a != "--random"]
    scattered = "--random" in sys.argv[1:]
    n = int(args[0])
    rnd = random.Random(42)
    out = sys.stdout
    out.write("id,network,enos_format,third_party_cloud,enos_version,constrained,long_connection,needs\n")
    nets, yn, vers = ["tcp", "udp", "both", "none"], ["yes", "no"], ["2", "3"]
    lines = []
    # With --random, an answer with a default is left out a third of the time.
    opt = (lambda: rnd.choice(["yes", "no", ""])) if scattered else (lambda: rnd.choice(yn))
    for i in range(n):
        lines.append(
            f"dev-{i:07d},{rnd.choice(nets)},{rnd.choice(yn)},{opt()},{rnd.choice(vers)},"
            f"{opt()},{opt()},{needs(rnd) if scattered else rnd.choice(PROFILES)}\n"
        )
        if len(lines) >= 10000:
            out.write("".join(lines))
            lines.clear()
    out.write("".join(lines))


def needs(rnd):
    picked = [f for f in FEATURES if rnd.random() < 0.4]
    rnd.shuffle(picked)
    return ";".join(picked)


if __name__ == "__main__":
    main()
