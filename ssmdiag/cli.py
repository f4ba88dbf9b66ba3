"""The command line: `ssmdiag check | endpoints | features | run | version`.

Exit codes: 0 ok, 1 warn, 2 fail, 3 unknown, 64 usage error, 78 configuration
error. `version` and `features VERSION` import neither psutil nor ssl:
they run on every boot and from cron, so start-up time matters.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, Optional

from ssmdiag import __version__
from ssmdiag.config import Config, ConfigError, load_config, with_overrides
from ssmdiag.output.sinks import SINK_NAMES
from ssmdiag.report import ExitCode


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        help="ssmdiag config file (default: $SSMDIAG_CONFIG or /etc/ssmdiag/ssmdiag.toml)",
    )
    common.add_argument(
        "--log-format",
        choices=("console", "json"),
        help="format of diagnostic logs on stderr (overrides [log] format)",
    )
    common.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="level of diagnostic logs on stderr (overrides [log] level)",
    )
    fmt = _Parser(add_help=False)
    fmt.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="output format (default: table)",
    )

    parser = _Parser(
        prog="ssmdiag",
        description="Can Session Manager reach this node? "
        "Exit codes: 0 ok, 1 warn, 2 fail, 3 unknown, 64 usage, 78 config.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"ssmdiag {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    network = _Parser(add_help=False)
    network.add_argument("--region", help="the node's region (overrides [network] region)")
    network.add_argument(
        "--agent-config",
        metavar="PATH",
        help="the agent's amazon-ssm-agent.json (overrides [agent] config_file)",
    )
    prefs = _Parser(add_help=False)
    prefs.add_argument(
        "--session-preferences",
        metavar="FILE",
        help="the account's session preferences: the JSON of `aws ssm get-document --name "
        "SSM-SessionManagerRunShell --query Content` (overrides [session])",
    )
    check = commands.add_parser(
        "check",
        parents=[common, fmt, network, prefs],
        help="run the checks once",
        description="Run every check once and print the report (table or JSON). Exit code: "
        "the worst status (0 ok, 1 warn, 2 fail, 3 unknown).",
    )
    check.add_argument(
        "--only",
        nargs="+",
        action="extend",
        metavar="ID",
        help="run only these check ids (repeatable)",
    )
    features = commands.add_parser(
        "features",
        parents=[common, fmt],
        help="what a given (or the installed) agent version allows",
        description="Which Session Manager features an SSM Agent version allows, with the "
        "documented minimum of each (and where the agent's release notes differ).",
    )
    features.add_argument("agent_version", nargs="?", metavar="VERSION")
    commands.add_parser(
        "endpoints",
        parents=[common, fmt, network],
        help="the endpoints this node must reach, and why",
        description="The ec2messages, ssm and ssmmessages URLs the agent uses on this node, "
        "each with its signing region and where it comes from (the agent's config, its "
        "identity region, or ssmdiag's own override). Nothing is contacted but IMDS.",
    )
    policy = commands.add_parser(
        "policy",
        parents=[common, prefs],
        help="the IAM policy the node's role needs for the session preferences",
        description="Print the minimal IAM policy (JSON) the node's role needs for Session "
        "Manager with the given session preferences, as the Session Manager documentation "
        "builds it, with ARNs for the node's partition. Preferences come from [session], "
        "--session-preferences, or the flags below (flags win).",
    )
    policy.add_argument("--region", help="the node's region (for ARNs; default: the node's)")
    policy.add_argument("--s3-bucket", metavar="BUCKET", help="session logs go to this bucket")
    policy.add_argument("--s3-prefix", metavar="PREFIX", help="... under this key prefix")
    policy.add_argument(
        "--s3-bucket-owner",
        metavar="ACCOUNT",
        help="the bucket belongs to this other account (adds s3:PutObjectAcl)",
    )
    policy.add_argument("--log-group", metavar="NAME", help="session logs go to this log group")
    policy.add_argument("--kms-key", metavar="KEY", help="sessions are encrypted with this key")
    run = commands.add_parser(
        "run",
        parents=[common, network, prefs],
        help="the daemon: check at start and then on a schedule, logging changes",
        description="Check at start and then every [daemon] interval (sooner while a check "
        "fails), writing health events to the sinks. SIGHUP reloads the config; SIGTERM stops.",
    )
    run.add_argument(
        "--once",
        action="store_true",
        help="one cycle with the daemon's sinks, then exit with the health code",
    )
    run.add_argument(
        "--sink",
        action="append",
        choices=SINK_NAMES,
        help="where health events go (repeatable; overrides [sinks] enabled)",
    )
    # Only the Windows service control manager starts `service`: it exists only there.
    if sys.platform == "win32":
        commands.add_parser(
            "service", help="the entry point the Windows service control manager starts"
        )
    commands.add_parser("version", help="print ssmdiag's version", description="Print the version.")
    return parser


def _start_logging(args: argparse.Namespace, config: Config) -> None:
    # Imported here: `version` and `features VERSION` never log.
    from ssmdiag.log import configure_logging

    configure_logging(args.log_format or config.log_format, args.log_level or config.log_level)


def _cmd_check(args: argparse.Namespace, config: Config) -> int:
    from ssmdiag.checks import CHECK_IDS

    unknown = [ident for ident in args.only or () if ident not in CHECK_IDS]
    if unknown:
        raise UsageError(
            f"ssmdiag check: unknown check id(s) {', '.join(unknown)}; "
            f"known: {', '.join(CHECK_IDS)}"
        )
    _start_logging(args, config)
    from ssmdiag.engine import run_checks
    from ssmdiag.output.render import render_json, render_table, use_colour
    from ssmdiag.platform import UnsupportedPlatform, detect

    try:
        platform = detect(config)
    except UnsupportedPlatform as exc:
        _err(f"ssmdiag: {exc}")
        return ExitCode.UNKNOWN
    report = run_checks(platform, config, args.only)
    if args.format == "json":
        _write(render_json(report.to_dict()))
    else:
        _write(render_table(report, use_colour(sys.stdout)))
    return int(report.exit_code)


def _cmd_endpoints(args: argparse.Namespace, config: Config) -> int:
    from ssmdiag.checks import Context
    from ssmdiag.endpoints import EndpointError
    from ssmdiag.output.render import render_json
    from ssmdiag.platform import UnsupportedPlatform, detect

    try:
        ctx = Context(detect(config), config)
    except UnsupportedPlatform as exc:
        _err(f"ssmdiag: {exc}")
        return ExitCode.UNKNOWN
    try:
        plan = ctx.fact("endpoint_plan")
    except EndpointError as exc:
        _err(f"ssmdiag: {exc}")
        return ExitCode.CONFIG
    if plan is None:
        print(
            "ssmdiag: no region found; set --region or region under [network] in the config",
            file=sys.stderr,
        )
        return ExitCode.UNKNOWN
    from ssmdiag.redact import redact

    data = redact(plan.to_dict())
    data["region_source"] = ctx.fact("identity").region_source
    agent_config = ctx.fact("agent_config")
    if agent_config.state in ("invalid", "refused", "unverified"):
        # The endpoints below are the defaults: the agent reads nothing from this file.
        data["agent_config_problem"] = redact(agent_config.message)
        _err(
            f"ssmdiag: note: {agent_config.path}: {agent_config.message}; the agent will not "
            "start with it, so these are the endpoints without it (`ssmdiag check --only "
            "agent.config` says what to fix)"
            if agent_config.state != "unverified"
            else f"ssmdiag: note: {agent_config.path} could not be judged: {agent_config.message}"
        )
    if args.format == "json":
        _write(render_json(data))
    else:
        region = data["region"] or "unknown"
        lines = [
            f"identity region {region} (from {data['region_source'] or 'nowhere'}), "
            f"DNS suffix {data['dns_suffix']}",
            "",
        ]
        for e in data["endpoints"]:
            url = e["url"] or "(none)"
            signing = f"signed for {e['signing_region']}" if e["signing_region"] else "unsigned"
            lines.append(f"{e['service']:12} {url}  [{signing}]")
            lines.append(f"{'':12} from {e['origin']}")
            if e.get("problem"):
                lines.append(f"{'':12} PROBLEM: {e['problem']}")
            for note in e.get("notes", []):
                lines.append(f"{'':12} note: {note}")
        _write("\n".join(lines) + "\n")
    return ExitCode.OK


def _features_data(version_text: str, config: Config) -> dict[str, Any]:
    from ssmdiag.features import evaluate_all
    from ssmdiag.versions import AgentVersion

    version = AgentVersion.parse(version_text)
    return {
        "version": str(version),
        "features": [
            {
                "id": v.feature.id,
                "title": v.feature.title,
                "minimum": str(v.feature.minimum),
                "status": v.status,
                "summary": v.summary,
                "remediation": v.remediation,
            }
            for v in evaluate_all(version, config.required_features)
        ],
    }


def _cmd_features(args: argparse.Namespace, config: Config) -> int:
    from ssmdiag.versions import VersionError

    version_text = args.agent_version
    if version_text is None:
        from ssmdiag.agent import derive_agent_facts
        from ssmdiag.platform import UnsupportedPlatform, detect

        try:
            facts = derive_agent_facts(detect(config).discover_agent())
        except UnsupportedPlatform as exc:
            _err(f"ssmdiag: {exc}")
            return ExitCode.UNKNOWN
        if not facts.installed:
            print(
                "ssmdiag: no SSM Agent found on this node; name a version: "
                "`ssmdiag features 3.3.987.0`",
                file=sys.stderr,
            )
            return ExitCode.FAIL
        if facts.version is None:
            print(
                f"ssmdiag: the installed agent's version cannot be read: {facts.version_error}",
                file=sys.stderr,
            )
            return ExitCode.UNKNOWN
        version_text = str(facts.version)
    try:
        data = _features_data(version_text, config)
    except VersionError as exc:
        raise UsageError(f"ssmdiag features: {exc}") from None
    from ssmdiag.output.render import render_features_table, render_json, use_colour

    if args.format == "json":
        _write(render_json(data))
    else:
        _write(render_features_table(data, use_colour(sys.stdout)))
    statuses = {f["status"] for f in data["features"]}
    return ExitCode.FAIL if "fail" in statuses else ExitCode.WARN if "warn" in statuses else 0


def _cmd_run(args: argparse.Namespace, config: Config) -> int:
    # The daemon's own diagnostics (stderr) default to warnings: its news goes through the sinks.
    from ssmdiag.log import configure_logging

    configure_logging(args.log_format or config.log_format, args.log_level or "warning")
    from ssmdiag.service import build_daemon, install_signal_handlers

    daemon = build_daemon(
        config,
        config_path=args.config,
        cli_sinks=args.sink or (),
        cli_region=args.region,
        cli_agent_config=args.agent_config,
        cli_session_file=args.session_preferences,
    )
    if args.once:
        return daemon.run_once()
    install_signal_handlers(daemon)
    return daemon.serve()


def _cmd_policy(args: argparse.Namespace, config: Config) -> int:
    from dataclasses import replace

    from ssmdiag.output.render import render_json
    from ssmdiag.policy import build_policy
    from ssmdiag.session_prefs import PreferencesError, parse_preference

    given = {
        "s3_bucket": args.s3_bucket,
        "s3_prefix": args.s3_prefix,
        "s3_bucket_owner": args.s3_bucket_owner,
        "log_group": args.log_group,
        "kms_key_id": args.kms_key,
    }
    try:
        # The same parsers (and bounds) as [session] in the config file.
        chosen: dict[str, Any] = {
            key: parse_preference(key, value) for key, value in given.items() if value
        }
    except PreferencesError as exc:
        raise UsageError(f"ssmdiag policy: {exc}") from None
    prefs = replace(config.session, **chosen)
    region = config.region
    if region is None:
        region = _node_region(config)
    _write(render_json(build_policy(prefs.policy_inputs(region))))
    return ExitCode.OK


def _node_region(config: Config) -> Optional[str]:
    """The node's region for ARNs, as `check` finds it (IMDS, registration)."""
    from ssmdiag.checks import Context
    from ssmdiag.platform import UnsupportedPlatform, detect

    try:
        region: Optional[str] = Context(detect(config), config).fact("identity").region
    except UnsupportedPlatform:
        return None
    if region is None:
        _err("ssmdiag: note: the node's region is unknown; ARNs use the aws partition")
    return region


def _cmd_service() -> int:
    if sys.platform == "win32":
        from ssmdiag.platform.windows_service import dispatch

        return dispatch()
    raise UsageError(
        "ssmdiag service: only the Windows service control manager starts this; "
        "use `ssmdiag run` (systemd, launchd or a terminal)"
    )


def _usable_streams() -> None:
    """`ssmdiag check >&-` leaves sys.stdout None; a surrogate in an endpoint would make
    print() raise under a UTF-8 locale. Output goes nowhere or escaped, never a traceback."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
        elif hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # already closed or detached
                setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


def _silence_stdout() -> None:
    """The reader of our stdout left (`| head`): drop the rest quietly, keep the exit code."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115


def _err(text: str) -> None:
    """A message on stderr, through the same redaction as every other output."""
    from ssmdiag.redact import redact_text

    print(redact_text(text), file=sys.stderr)


def _write(text: str) -> None:
    """Print a result; a reader that left (`| head -c 10`) ends the output, not the command,
    which still exits with the health code."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()


def main(argv: Optional[Sequence[str]] = None) -> int:
    _usable_streams()
    code = _main(argv)
    try:
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        _silence_stdout()
    return code


def _main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        if words[:1] == ["service"]:
            return _cmd_service()
        args = parser.parse_args(words)
        if args.command is None:
            parser.print_help(sys.stderr)
            return ExitCode.USAGE
        if args.command == "version":
            print(f"ssmdiag {__version__}")
            return ExitCode.OK
        if args.command == "service":
            return _cmd_service()
        config = load_config(args.config)
        if args.command in ("check", "endpoints", "run", "policy"):
            try:
                config = with_overrides(
                    config,
                    args.region,
                    getattr(args, "agent_config", None),
                    getattr(args, "session_preferences", None),
                )
            except ValueError as exc:
                raise UsageError(f"ssmdiag {args.command}: {exc}") from None
        if args.command == "check":
            return _cmd_check(args, config)
        if args.command == "endpoints":
            return _cmd_endpoints(args, config)
        if args.command == "run":
            return _cmd_run(args, config)
        if args.command == "policy":
            return _cmd_policy(args, config)
        return _cmd_features(args, config)
    except UsageError as exc:
        _err(f"{exc}\n(see `ssmdiag --help`)")
        return ExitCode.USAGE
    except ConfigError as exc:
        _err(f"ssmdiag: {exc}")
        return ExitCode.CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return ExitCode.OK
    except RecursionError:
        print(
            "ssmdiag: input nested too deeply to read (see the bounds in the README)",
            file=sys.stderr,
        )
        return ExitCode.UNKNOWN
