// Values that cross the repo/image boundary. Plain data, printable as JSON.

import type { IndexRecord } from "@kiln/apk";

/** A repository as named in a config or /etc/apk/repositories. */
export interface RepositoryRef {
  /** Base URL or path; indexes live at `${url}/${arch}/APKINDEX.tar.gz`. */
  url: string;
  /** `@tag` the repository was declared with; tagged repositories serve only `name@tag` requests. */
  tag?: string;
}

/** One package available from a repository. */
export interface RepoPackage {
  record: IndexRecord;
  repo: RepositoryRef;
  /** Where to fetch the .apk: `${repo.url}/${record.arch}/${name}-${version}.apk`. */
  url: string;
}

/** The outcome of resolving requests: every package to install, dependencies first. */
export interface Resolution {
  /** Install order: each package after the packages it depends on (cycles broken deterministically). */
  packages: RepoPackage[];
  /** The requests as given, for etc/apk/world. */
  world: string[];
}
