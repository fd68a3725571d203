export {
  buildJailerArguments,
  type FirecrackerArgument,
  type JailerInvocation,
  parseFirecrackerArguments,
} from './arguments.js';
export {
  type CgroupMounts,
  parseCgroupMounts,
  planCgroupDirs,
  readCgroupMounts,
  removeCgroupDirs,
} from './cgroups.js';
export {
  JAIL_MARKER_FILE,
  JAILED_API_SOCKET_PATH,
  type JailLayout,
  jailerPrimitive,
  jailLayout,
} from './jailer-primitive.js';
export {
  DEFAULT_CHROOT_BASE_DIR,
  type JailerOptions,
  type JailerResourceLimits,
  type ResolvedJailerOptions,
  resolveJailerOptions,
} from './options.js';
export {
  assignJailPaths,
  checkJailPath,
  planStaging,
  type StagedFileKind,
  type StagingMethod,
  type StagingPlanEntry,
  type StagingRequest,
  type StagingTarget,
  stageFile,
} from './staging.js';
