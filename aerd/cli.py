"""Command line: parses arguments and wires the stages together; no logic of its own."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

# One BLAS/OpenMP thread: the daemon's products are tiny, and a second BLAS thread doubled the
# cost on 2 cores. Set before anything imports numpy (nothing above this line does).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from . import config  # noqa: E402
from .cliparser import RUN_FLAGS, build_parser  # noqa: E402
from .errors import AerdError, AudioError, ConfigError  # noqa: E402

log = logging.getLogger("aerd")


def _log_level(level: str) -> int:
    return getattr(logging, level.upper(), logging.INFO)


def _setup_logging(level: str, stream: Any = None) -> None:
    """Log lines to stdout (journald) or, for commands whose stdout is data, ``stream``."""
    logging.basicConfig(stream=stream or sys.stdout, level=_log_level(level),
                        format="%(levelname)s %(name)s: %(message)s", force=True)


def run_settings(args: argparse.Namespace, again: bool = False) -> config.Settings:
    if args.config == "":   # (an unset variable: `--config "$CONFIG"` ran on the defaults)
        raise ConfigError("--config: an empty path; give a TOML file or leave --config out")
    overrides = {dotted: getattr(args, flag[2:].replace("-", "_"))
                 for flag, (dotted, _) in RUN_FLAGS.items()}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    flags = {dotted: flag for flag, (dotted, _) in RUN_FLAGS.items()}
    if args.connect is not None:
        if args.endpoint is not None:
            raise ConfigError(f"--connect {args.connect} and --endpoint {args.endpoint}: give one "
                              "(--connect connects to its endpoint, --endpoint binds)")
        overrides["publish.endpoint"] = args.connect
        overrides["publish.connect"] = True
        flags["publish.endpoint"] = "--connect"
    return config.load(args.config, overrides, flags, again)


def state_dir(settings: config.Settings) -> Path:
    if settings.service.state_dir:
        return Path(settings.service.state_dir)
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    return Path.home() / ".local" / "state" / "aerd"


def build_source(s: config.Settings, rate: int, wait_for_mic: bool = False,
                 device_option: str = "--device", stop: Any = None):
    src = s.input.source
    if src == "mic":
        from .mic import MicSource

        return MicSource(s.input.device, rate, s.input.buffer_s, s.input.block_s, wait=wait_for_mic,
                         option=device_option, stop=stop)
    from .sources import FileSource
    from .stdin import StdinSource

    if src == "-":
        if sys.stdin is None:   # started with stdin closed (`<&-`)
            raise ConfigError("--input -: there is no standard input (it is closed)")
        return StdinSource(sys.stdin.buffer, s.input.rate, rate, s.input.channels, s.input.block_s)
    return FileSource(src, rate, fast=s.input.fast, block_s=s.input.block_s)


def across_processes(endpoint: str, option: str) -> None:
    """Refuse an inproc:// endpoint on the command line (the daemon's is a config check)."""
    if config.in_process(endpoint):
        raise ConfigError(f"{option} {endpoint}: inproc:// reaches only sockets of the same "
                          "process; give tcp://HOST:PORT or ipc://PATH")


def cmd_run(args: argparse.Namespace) -> int:
    import signal

    from .adaptstate import AdaptStore, same_features
    from .daemon import Daemon
    from .model import load_model
    from .notify import Notifier
    from .pipeline import Pipeline
    from .publisher import Publisher

    # a stop or reload during start-up (loading the model, opening the input) is kept for the
    # daemon to act on, not fatal: SIGTERM's and SIGHUP's default actions kill the process.
    # A second stop while start-up still blocks (a config FIFO nobody writes, a device that
    # hangs) ends it there.
    early: list[int] = []
    stops = (signal.SIGTERM, signal.SIGINT)

    def during_start_up(signum: int, _frame: Any) -> None:
        if signum in stops and any(e in stops for e in early):
            raise AerdError(f"stopped by a second {signal.Signals(signum).name} during start-up")
        early.append(signum)

    for sig in (*stops, signal.SIGHUP):
        signal.signal(sig, during_start_up)
    s = run_settings(args)
    _setup_logging(s.service.log_level)
    model = load_model(s.model.path or None, adapt=s.adapt.enabled)
    store = AdaptStore(state_dir(s), s.adapt) if model.can_adapt else None
    # (before the socket is bound: a bad adaptation table in the card is refused here)
    pipeline = Pipeline(model, s.decision, store.load(model) if store else None)
    publisher = Publisher(s.publish)
    notifier = Notifier.from_env()
    try:   # under systemd a missing microphone is waited for: exiting would only restart us
        source = build_source(s, model.card.features.sample_rate, wait_for_mic=notifier.enabled,
                              device_option="--device" if args.device is not None
                              else f"{args.config}: [input] device",
                              stop=lambda: any(e in stops for e in early))
    except AerdError:
        publisher.close()
        raise
    device_id = s.publish.device_id or socket.gethostname()

    rate = model.card.features.sample_rate   # the source delivers this; reloads must keep it

    def reload(old: Pipeline) -> Any:   # (no reference to the first model: a reload frees it)
        nonlocal store   # the daemon adopts the returned pipeline: its state lives there
        try:
            new = run_settings(args, again=True)
            m = load_model(new.model.path or None, adapt=new.adapt.enabled)
            if m.card.features.sample_rate != rate:
                raise ConfigError(f"model {m.card.name} takes {m.card.features.sample_rate} Hz "
                                  f"audio, the input delivers {rate} Hz: restart to change it")
            st = AdaptStore(state_dir(new), new.adapt) if m.can_adapt else None
            pipeline = Pipeline(m, new.decision, st.load(m) if st else None)
            pipeline.continue_stream(old)   # same features and windows: no window is lost
            if (old.adapter is not None and pipeline.adapter is not None
                    and old.model.card.name == m.card.name
                    and old.adapter.dim == pipeline.adapter.dim):
                if same_features(old.model, m):
                    # the same model's device statistics carry over in memory (also when
                    # they are not persisted, or the save before the reload failed)
                    pipeline.adapter.load_state_dict(old.adapter.state_dict())
                else:   # statistics of other feature values: as for a file saved for them
                    log.warning("reload: model %s has other features or windows; its "
                                "adaptation starts afresh", m.card.name)
        except Exception as e:   # noqa: BLE001 -- whatever is wrong, the daemon keeps running
            # a config or model error is one line; anything else is a bug: its traceback too
            log.error("reload failed, keeping the running pipeline: %s", e,
                      exc_info=not isinstance(e, (AerdError, OSError)))
            return None
        if new.publish != s.publish or new.input != s.input:
            log.warning("reload: [input] and [publish] changes need a restart; applied the rest")
        store = st
        logging.getLogger().setLevel(_log_level(new.service.log_level))
        return pipeline

    def persist(p: Pipeline) -> bool:   # False: the save failed (status save_errors)
        if store is not None and p.adapter is not None:
            return store.save(p.model, p.adapter)
        return True

    daemon = Daemon(source, pipeline, publisher, device_id, s.publish.status_interval, notifier,
                    reload=reload, persist=persist)
    del model, pipeline   # the daemon holds them; after a reload nothing does
    daemon.install_signal_handlers(pending=early)
    try:
        if (args.wait_subscriber > 0 and not publisher.wait_for_subscriber(
                args.wait_subscriber, stop=lambda: daemon.stop_requested)
                and not daemon.stop_requested):
            log.warning("no subscriber within %.1f s; starting anyway", args.wait_subscriber)
        rc = daemon.run()
    finally:
        source.close()
        publisher.close()
    error = getattr(source, "error", None)
    if error:   # the events of the readable part went out; the exit says the file is damaged
        print(f"aerd run: error: {source.name}: {error}", file=sys.stderr)
        return 1
    return rc


def cmd_classify(args: argparse.Namespace) -> int:
    from .classify import classify_file
    from .model import load_model

    _setup_logging("warning", sys.stderr)   # stdout is JSON lines
    model = load_model(args.model, adapt=args.adapt)
    adapter = None
    if args.adapt:
        from .adaptstate import new_adapter

        adapter = new_adapter(model.card) if model.can_adapt else None
        if adapter is None:
            raise ConfigError(f"--adapt: model {model.card.name} has no adapted graph")
    failed = 0
    for f in args.files:
        try:
            res = classify_file(f, model, args.min_speech, adapter)
        except AudioError as e:
            print(f"aerd classify: {e}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps(res.to_dict()), flush=True)
        if res.label is None:
            print(f"aerd classify: {f}: no speech (no window with speech >= "
                  f"{args.min_speech:g}), no label; --min-speech 0 labels it anyway",
                  file=sys.stderr)
    return 1 if failed else 0


def cmd_listen(args: argparse.Namespace) -> int:
    from .listen import curve_client_from_args, listen
    from .security import is_local_endpoint

    if args.count is not None and args.topic and "emotion" not in args.topic:
        raise ConfigError("--count counts emotion events, which --topic leaves out: "
                          "add --topic emotion")
    across_processes(args.endpoint, "--endpoint")
    curve = curve_client_from_args(args.server_key, args.key)
    try:
        local = is_local_endpoint(args.endpoint)
    except ConfigError as e:
        raise ConfigError(f"--endpoint: {e}") from None
    if curve is None and not local:
        print(f"aerd listen: warning: {args.endpoint} is another host and CURVE is off: events "
              "come in plain text, and a device that uses CURVE sends none (--server-key, --key)",
              file=sys.stderr)
    if args.pretty and isinstance(sys.stdout, io.TextIOWrapper):
        # the publisher's names, on a terminal that is not UTF-8 (Latin-1, EUC-JP): escaped,
        # not a UnicodeEncodeError (JSON lines are ASCII)
        sys.stdout.reconfigure(errors="backslashreplace")
    return listen(args.endpoint, args.count, args.timeout, args.topic or ["emotion", "status"],
                  pretty=args.pretty, curve=curve)


def cmd_devices(_args: argparse.Namespace) -> int:
    from .capture import list_devices_within

    devices = list_devices_within(10.0)
    if not devices:
        print("no input devices found", file=sys.stderr)
        return 1
    for d in devices:
        print(f"{d['index']:3d}  {d['name']}  ({d['channels']} ch, {d['default_rate']:.0f} Hz)")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from .security import keygen

    public, secret = keygen(Path(args.directory), args.name)
    print(f"public key: {public}\nsecret key: {secret}")
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    from .relay import RelayConfig, curve_side, serve

    _setup_logging(args.log_level)
    across_processes(args.frontend, "--frontend")
    across_processes(args.backend, "--backend")
    cfg = RelayConfig(args.frontend, args.backend,
                      curve_side("frontend", args.frontend_secret, args.frontend_clients),
                      curve_side("backend", args.backend_secret, args.backend_clients),
                      args.insecure)
    return serve(cfg)


COMMANDS = {"run": cmd_run, "classify": cmd_classify, "listen": cmd_listen, "devices": cmd_devices,
            "keygen": cmd_keygen, "relay": cmd_relay}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except AerdError as e:
        print(f"aerd {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:   # `aerd listen | head`: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # no second error when Python flushes stdout
        return 0


if __name__ == "__main__":
    sys.exit(main())
