/**
 * The simulated `firecracker` process: command line, API socket, VMM thread, logger and metrics. The bin
 * calls {@link runFirecracker} and exits with the code it resolves with; the simulated jailer calls it in
 * process to imitate `exec`.
 */
import { readFileSync } from 'node:fs';
import { type ApiResponse, ApiServer, SerialQueue } from './api-server.js';
import {
  describeArgumentError,
  type FirecrackerArguments,
  firecrackerHelpText,
  parseFirecrackerArguments,
} from './cli.js';
import {
  DEFAULT_API_SOCKET_PATH,
  DEFAULT_HTTP_MAX_PAYLOAD_BYTES,
  DEFAULT_INSTANCE_ID,
  ExitCode,
  SIMULATED_SNAPSHOT_VERSION,
} from './constants.js';
import {
  matchesEndpoint,
  readSimulatorBehaviour,
  reportedVersionOf,
  type SimulatorBehaviour,
} from './fault-injection.js';
import { type LogLevelFilter, origins, VmmLogger } from './logger.js';
import { SimulatorMetrics } from './metrics.js';
import { describeOsError, PathResolver } from './paths.js';
import {
  type IncomingRequest,
  type ParsedRequest,
  parseRequest,
  RequestError,
  type VmmAction,
} from './request-parser.js';
import { deserializeStruct, SerdeJsonError } from './serde-json.js';
import { describeSnapshotFile, formatSnapshotVersion } from './snapshot-files.js';
import {
  checkInstanceId,
  cpuConfigSchema,
  parseLogLevel,
  type VmmConfigFile,
  vmmConfigFileSchema,
} from './validation.js';
import { SimulatedVmm } from './vmm-state.js';

export interface RunFirecrackerOptions {
  /** The jail root: every path the VMM receives is resolved inside it. Default: `MICROVM_SIMULATOR_ROOT_DIR`. */
  rootDir?: string;
  /** The process environment (fault injection). Default: `process.env`. */
  env?: NodeJS.ProcessEnv;
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  204: 'No Content',
  400: 'Bad Request',
  413: 'Payload too large',
};
const METHOD_DEBUG: Record<string, string> = { GET: 'Get', PUT: 'Put', PATCH: 'Patch', DELETE: 'Delete' };

function writeStderr(text: string): void {
  process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** Firecracker panics on an invalid `--id`; release builds abort, so the process dies by SIGABRT. */
function panicAndAbort(message: string): Promise<number> {
  writeStderr(
    `thread 'main' panicked at src/firecracker/src/main.rs:371:14:\n${message}\nnote: run with \`RUST_BACKTRACE=1\` environment variable to display a backtrace`,
  );
  process.kill(process.pid, 'SIGABRT');
  // The signal ends the process; nothing resolves.
  return new Promise<number>(() => {});
}

/**
 * Runs the simulated Firecracker with `argv` (without the program name). Resolves with the exit code once the
 * VMM stops; the caller exits the process with it.
 */
export async function runFirecracker(argv: string[], options: RunFirecrackerOptions = {}): Promise<number> {
  const environment = options.env ?? process.env;
  let behaviour: SimulatorBehaviour;
  try {
    behaviour = readSimulatorBehaviour(environment);
  } catch (error) {
    writeStderr((error as Error).message);
    return ExitCode.genericError;
  }

  const parsed = parseFirecrackerArguments(argv);
  if (!parsed.ok) {
    writeStderr(
      `Arguments parsing error: ${describeArgumentError(parsed.error)} \n\nFor more information try --help.`,
    );
    return ExitCode.argumentParsing;
  }
  const args = parsed.arguments;
  if (args.help) {
    process.stdout.write(firecrackerHelpText(reportedVersionOf(behaviour)));
    return ExitCode.ok;
  }
  if (args.version) {
    process.stdout.write(`Firecracker v${reportedVersionOf(behaviour)}\n`);
    return ExitCode.ok;
  }
  if (args.snapshotVersion) {
    process.stdout.write(`${formatSnapshotVersion(SIMULATED_SNAPSHOT_VERSION)}\n`);
    return ExitCode.ok;
  }

  const rootDir = options.rootDir ?? behaviour.rootDir;
  const paths = new PathResolver({ rootDir });

  if (args.describeSnapshot !== undefined) {
    try {
      process.stdout.write(`${describeSnapshotFile(paths.resolve(args.describeSnapshot))}\n`);
      return ExitCode.ok;
    } catch (error) {
      writeStderr(`Error: ${(error as Error).message}`);
      return ExitCode.genericError;
    }
  }

  const instanceId = args.id ?? DEFAULT_INSTANCE_ID;
  const idProblem = checkInstanceId(instanceId);
  if (idProblem !== undefined) return panicAndAbort(`Invalid instance ID: ${idProblem}`);

  const level = args.level === undefined ? undefined : parseLogLevel(args.level);
  if (args.level !== undefined && level === undefined) {
    writeStderr(
      `Invalid value for logger level: ${args.level}.Possible values: [Error, Warning, Info, Debug]`,
    );
    return ExitCode.badConfiguration;
  }

  // A chrooted Firecracker's working directory is the jail's "/".
  if (rootDir !== undefined) process.chdir(paths.rootDir as string);

  return new FirecrackerProcess(
    args,
    behaviour,
    paths,
    instanceId,
    level as LogLevelFilter | undefined,
  ).run();
}

class FirecrackerProcess {
  readonly #args: FirecrackerArguments;
  readonly #behaviour: SimulatorBehaviour;
  readonly #paths: PathResolver;
  readonly #logger: VmmLogger;
  readonly #metrics: SimulatorMetrics;
  readonly #queue = new SerialQueue();
  readonly #vmm: SimulatedVmm;
  readonly #maxPayloadBytes: number;
  readonly #exit: Promise<number>;
  #resolveExit: (code: number) => void = () => {};
  #exiting = false;
  #requestCount = 0;
  #server: ApiServer | undefined;

  constructor(
    args: FirecrackerArguments,
    behaviour: SimulatorBehaviour,
    paths: PathResolver,
    instanceId: string,
    level: LogLevelFilter | undefined,
  ) {
    this.#args = args;
    this.#behaviour = behaviour;
    this.#paths = paths;
    this.#logger = new VmmLogger({ instanceId });
    this.#logger.configure({
      level,
      showLevel: args.showLevel,
      showLogOrigin: args.showLogOrigin,
      module: args.module,
    });
    this.#metrics = new SimulatorMetrics({ periodMs: behaviour.metricsPeriodMs });
    this.#metrics.beforeWrite = () =>
      this.#metrics.increment('logger', 'missed_log_count', this.#logger.takeMissedLogCount());
    this.#maxPayloadBytes = args.httpApiMaxPayloadSize ?? DEFAULT_HTTP_MAX_PAYLOAD_BYTES;
    this.#exit = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
    this.#vmm = new SimulatedVmm({
      instanceId,
      logger: this.#logger,
      metrics: this.#metrics,
      paths,
      behaviour,
      enablePci: args.enablePci,
      bootTimer: args.bootTimer,
      mmdsSizeLimitBytes: args.mmdsSizeLimit ?? this.#maxPayloadBytes,
      requestExit: (code, reason) => this.#requestExit(code, reason),
    });
  }

  #requestExit(code: number, reason: string): void {
    if (this.#exiting) return;
    this.#exiting = true;
    this.#server?.stop();
    this.#vmm.shutdown();
    if (code === 0)
      this.#logger.info('main', `Firecracker exiting successfully. exit_code=${code}`, origins.main);
    else
      this.#logger.error(
        'main',
        `Firecracker exiting with error (${reason}). exit_code=${code}`,
        origins.main,
      );
    this.#resolveExit(code);
  }

  /** Fails startup the way Firecracker's `main` does: log, exit 1. */
  #startupFailure(message: string): number {
    this.#logger.error('main', message, origins.main);
    writeStderr(message);
    return ExitCode.genericError;
  }

  async run(): Promise<number> {
    const args = this.#args;
    const started = process.hrtime.bigint();
    if (args.logPath !== undefined) {
      try {
        this.#logger.configure({ hostLogPath: this.#paths.resolve(args.logPath) });
      } catch (error) {
        return this.#startupFailure(
          `Failed to initialize logger: Failed to open target file: ${describeOsError(error)}`,
        );
      }
    }
    this.#logger.info('main', `Running Firecracker v${reportedVersionOf(this.#behaviour)}`, origins.main);
    if (args.metricsPath !== undefined) {
      try {
        this.#metrics.initialize(this.#paths.resolve(args.metricsPath));
      } catch (error) {
        return this.#startupFailure(`Failed to initialize metrics: ${describeOsError(error)}`);
      }
    }
    if (args.seccompFilter !== undefined) {
      try {
        readFileSync(this.#paths.resolve(args.seccompFilter));
      } catch (error) {
        return this.#startupFailure(
          `Seccomp error: Failed to open the seccomp filter file: ${describeOsError(error)}`,
        );
      }
    } else if (args.noSeccomp) {
      this.#logger.warn(
        'main',
        'You are running Firecracker with seccomp disabled. This is not recommended.',
        origins.main,
      );
    }

    if (args.metadata !== undefined) {
      let text: string;
      try {
        text = readFileSync(this.#paths.resolve(args.metadata), 'utf8');
      } catch (error) {
        return this.#startupFailure(
          `Unable to open or read from the mmds content file: ${describeOsError(error)}`,
        );
      }
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        return panicAndAbort('MMDS error: metadata provided not valid json');
      }
      const outcome = await this.#vmm.handle({ kind: 'PutMmds', value });
      if (outcome.status !== 204) {
        return this.#startupFailure(
          `Populating MMDS from file failed: ${'faultMessage' in outcome ? outcome.faultMessage : ''}.`,
        );
      }
      this.#logger.info('main', 'Successfully added metadata to mmds from file', origins.main);
    }

    const startupUs = Number((process.hrtime.bigint() - started) / 1000n);
    const processStartupUs =
      args.startTimeUs !== undefined
        ? Math.max(0, Math.round(Date.now() * 1000 - args.startTimeUs))
        : startupUs;
    this.#metrics.store('api_server', 'process_startup_time_us', processStartupUs);
    this.#metrics.store('api_server', 'process_startup_time_cpu_us', Math.round(process.cpuUsage().user));

    const removeProcessHandlers = this.#installProcessHandlers();
    try {
      if (!args.noApi) {
        const failure = await this.#startApiServer();
        if (failure !== undefined) return failure;
      }
      if (args.configFile !== undefined)
        void this.#queue.run(() => this.#bootFromConfigFile(args.configFile as string));
      return await this.#exit;
    } finally {
      removeProcessHandlers();
    }
  }

  async #startApiServer(): Promise<number | undefined> {
    const behaviour = this.#behaviour;
    if (behaviour.hangAtStartup) {
      this.#logger.warn(
        'main',
        'MICROVM_SIMULATOR_HANG=startup: the API socket will never be bound.',
        origins.main,
      );
      // Nothing else holds the event loop: without a timer Node would end the process (exit 13) instead of hanging.
      const keepAlive = setInterval(() => {}, 60_000);
      try {
        return await this.#exit;
      } finally {
        clearInterval(keepAlive);
      }
    }
    if (behaviour.socketDelayMs > 0)
      await new Promise((resolve) => setTimeout(resolve, behaviour.socketDelayMs));
    const socketPath = this.#args.apiSock ?? DEFAULT_API_SOCKET_PATH;
    const server = new ApiServer({
      bindPath: this.#paths.socketPath(socketPath),
      maxPayloadBytes: this.#maxPayloadBytes,
      queue: this.#queue,
      handle: (request) => this.#handleApiRequest(request),
      onArrival: (method, path) => this.#onRequestArrival(method, path),
      onTransportError: (message) =>
        this.#logger.error(
          'fc_api',
          `Received Error. Status code: 400 Bad Request. Message: ${message}`,
          origins.apiServer,
        ),
    });
    try {
      await server.listen();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const detail = code === 'EADDRINUSE' ? '' : ` (${describeOsError(error)})`;
      return this.#startupFailure(
        `Failed to open the API socket at: ${socketPath}. Check that it is not already used.${detail}`,
      );
    }
    this.#server = server;
    this.#logger.debug('fc_api', `API server listening on ${socketPath}`, origins.apiServer);
    return undefined;
  }

  #onRequestArrival(method: string, path: string): boolean {
    if (this.#exiting) return false;
    this.#requestCount += 1;
    const crashAt = this.#behaviour.crashAtRequest;
    if (crashAt !== undefined && this.#requestCount === crashAt) {
      writeStderr(
        `microvm-simulator: injected crash at API request ${this.#requestCount} (${method} ${path}) (MICROVM_SIMULATOR_CRASH_AT_REQUEST=${crashAt})`,
      );
      this.#requestExit(ExitCode.genericError, 'injected crash');
      return false;
    }
    return true;
  }

  #describeRequest(request: IncomingRequest): string {
    const method = METHOD_DEBUG[request.method] ?? request.method;
    const path = request.path;
    if (request.body === undefined || path === '/mmds') return `${method} request on ${JSON.stringify(path)}`;
    if (path === '/cpu-config' && !this.#logger.enabled('Debug')) {
      return `${method} request on ${JSON.stringify(path)}. To view the CPU template received by the API, configure log-level to DEBUG`;
    }
    return `${method} request on ${JSON.stringify(path)} with body ${JSON.stringify(request.body.toString('utf8'))}`;
  }

  #errorResponse(status: 400 | 413, message: string): ApiResponse {
    const statusText = STATUS_TEXT[status] ?? '';
    this.#logger.error(
      'fc_api',
      `Received Error. Status code: ${status} ${statusText}. Message: ${message}`,
      origins.parsedRequest,
    );
    return { status, body: { fault_message: message } };
  }

  async #handleApiRequest(request: IncomingRequest): Promise<ApiResponse> {
    this.#logger.info(
      'fc_api',
      `The API server received a ${this.#describeRequest(request)}.`,
      origins.parsedRequest,
    );
    const behaviour = this.#behaviour;
    if (matchesEndpoint(behaviour.hang, request.method, request.path)) {
      this.#logger.warn(
        'fc_api',
        `MICROVM_SIMULATOR_HANG: ${request.method} ${request.path} will never be answered.`,
        origins.apiServer,
      );
      return new Promise<ApiResponse>(() => {});
    }
    if (matchesEndpoint(behaviour.reject, request.method, request.path)) {
      return this.#errorResponse(
        400,
        `Injected failure (MICROVM_SIMULATOR_REJECT): ${request.method} ${request.path}`,
      );
    }

    let parsed: ParsedRequest;
    try {
      parsed = parseRequest(request, { firecrackerVersion: reportedVersionOf(behaviour) });
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      if (error.metric !== undefined) {
        this.#metrics.increment(error.metric.group, `${error.metric.name}_count`);
        this.#metrics.increment(error.metric.group, `${error.metric.name}_fails`);
      }
      return this.#errorResponse(400, error.message);
    }
    if (parsed.metric !== undefined)
      this.#metrics.increment(parsed.metric.group, `${parsed.metric.name}_count`);
    for (const message of parsed.deprecations) {
      this.#logger.warn('fc_api', message, origins.parsedRequest);
      this.#metrics.increment('deprecated_api', 'deprecated_http_api_calls');
    }
    const deprecation = parsed.deprecations.length > 0;

    const outcome = await this.#vmm.handle(parsed.action);
    if (outcome.status === 400 || outcome.status === 413) {
      if (parsed.metric !== undefined)
        this.#metrics.increment(parsed.metric.group, `${parsed.metric.name}_fails`);
      const response = this.#errorResponse(outcome.status, outcome.faultMessage);
      if (outcome.fatal) {
        // The load failed half-way: Firecracker answers, then tears the process down.
        response.afterSend = () => this.#requestExit(ExitCode.genericError, 'snapshot load failed');
      }
      return { ...response, deprecation };
    }
    this.#logger.info(
      'fc_api',
      `The request was executed successfully. Status code: ${outcome.status} ${STATUS_TEXT[outcome.status]}.`,
      origins.parsedRequest,
    );
    return outcome.status === 200
      ? { status: 200, body: outcome.body, deprecation }
      : { status: 204, deprecation };
  }

  /** `--config-file`: configure in Firecracker's order, then boot. Any failure ends the process with 1. */
  async #bootFromConfigFile(configPath: string): Promise<void> {
    const fail = (message: string) => {
      this.#logger.error(
        'main',
        `Configuration for VMM from one single json failed: ${message}`,
        origins.main,
      );
      writeStderr(`Configuration for VMM from one single json failed: ${message}`);
      this.#requestExit(ExitCode.genericError, 'bad configuration file');
    };
    let text: string;
    try {
      text = readFileSync(this.#paths.resolve(configPath), 'utf8');
    } catch (error) {
      fail(`Unable to read the configuration file: ${describeOsError(error)}`);
      return;
    }
    let config: VmmConfigFile;
    try {
      config = deserializeStruct<VmmConfigFile>(text, vmmConfigFileSchema);
    } catch (error) {
      fail(error instanceof SerdeJsonError ? `Invalid JSON: ${error.message}` : String(error));
      return;
    }
    const actions: VmmAction[] = [];
    if (config.logger !== undefined) actions.push({ kind: 'ConfigureLogger', config: config.logger });
    if (config.metrics !== undefined) actions.push({ kind: 'ConfigureMetrics', config: config.metrics });
    if (config['machine-config'] !== undefined) {
      const machine = config['machine-config'];
      actions.push({
        kind: 'UpdateMachineConfiguration',
        config: {
          ...machine,
          smt: machine.smt ?? false,
          track_dirty_pages: machine.track_dirty_pages ?? false,
          huge_pages: machine.huge_pages ?? 'None',
        },
      });
    }
    if (config['cpu-config'] !== undefined) {
      const cpuConfig = config['cpu-config'];
      try {
        // A template object, or the path of a template file.
        const templateText =
          typeof cpuConfig === 'string'
            ? readFileSync(this.#paths.resolve(cpuConfig), 'utf8')
            : JSON.stringify(cpuConfig);
        actions.push({
          kind: 'PutCpuConfiguration',
          config: deserializeStruct(templateText, cpuConfigSchema),
        });
      } catch (error) {
        fail(
          `Invalid CPU template: ${error instanceof SerdeJsonError ? error.message : describeOsError(error)}`,
        );
        return;
      }
    }
    actions.push({ kind: 'ConfigureBootSource', config: config['boot-source'] });
    for (const drive of config.drives) actions.push({ kind: 'InsertBlockDevice', config: drive });
    for (const networkInterface of config['network-interfaces'] ?? []) {
      actions.push({ kind: 'InsertNetworkDevice', config: networkInterface });
    }
    if (config.vsock !== undefined) actions.push({ kind: 'SetVsockDevice', config: config.vsock });
    if (config.balloon !== undefined) actions.push({ kind: 'SetBalloonDevice', config: config.balloon });
    if (config['mmds-config'] !== undefined)
      actions.push({ kind: 'SetMmdsConfiguration', config: config['mmds-config'] });
    if (config.entropy !== undefined) actions.push({ kind: 'SetEntropyDevice', config: config.entropy });
    for (const device of config.pmem ?? []) actions.push({ kind: 'InsertPmemDevice', config: device });
    if (config['memory-hotplug'] !== undefined) {
      actions.push({ kind: 'SetMemoryHotplugDevice', config: config['memory-hotplug'] });
    }
    actions.push({ kind: 'StartMicroVm' });
    for (const action of actions) {
      const outcome = await this.#vmm.handle(action);
      if (outcome.status === 400 || outcome.status === 413) {
        fail(outcome.faultMessage);
        return;
      }
    }
  }

  /** Firecracker handles SIGHUP (exit 156); SIGTERM and SIGINT keep their default action. Crashes exit 1. */
  #installProcessHandlers(): () => void {
    let failing = false;
    const onFatal = (error: unknown) => {
      // Reporting the failure writes to stderr, which may be what failed: report once, never in a loop.
      if (failing) return;
      failing = true;
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      this.#logger.error('main', `Firecracker panicked: ${message}`, origins.main);
      writeStderr(`microvm-simulator: unexpected error: ${message}`);
      this.#requestExit(ExitCode.genericError, 'internal error');
    };
    const onHangup = () => {
      this.#metrics.store('signals', 'sighup', 1);
      this.#logger.error('main', 'Shutting down VM after intercepting signal 1, code 0.', origins.main);
      this.#requestExit(ExitCode.sighup, 'SIGHUP');
    };
    // Firecracker ignores SIGPIPE: output nobody reads any more (its supervisor died) is dropped, the VM runs on.
    const onOutputError = (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_DESTROYED') onFatal(error);
    };
    process.on('uncaughtException', onFatal);
    process.on('unhandledRejection', onFatal);
    process.on('SIGHUP', onHangup);
    process.stdout.on('error', onOutputError);
    process.stderr.on('error', onOutputError);
    return () => {
      process.off('uncaughtException', onFatal);
      process.off('unhandledRejection', onFatal);
      process.off('SIGHUP', onHangup);
      process.stdout.off('error', onOutputError);
      process.stderr.off('error', onOutputError);
    };
  }
}
