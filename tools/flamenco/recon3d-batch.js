// SPDX-License-Identifier: GPL-3.0-or-later
// Flamenco 3 job type: a folder of photos → Recon3D models, split into N tasks.
//
// Copy this file into the `scripts` folder next to your Flamenco Manager executable and
// restart the Manager. Every Worker needs Blender with the Recon3D extension enabled in its
// user preferences and the service's key (e.g. SEGMIND_API_KEY) in its environment. Task K
// runs, on any free Worker:
//
//   blender -b --online-mode --command recon3d generate PHOTOS --shard K/N \
//           --output OUTPUT/part-K.blend --export OUTPUT/glb [options]
//
// Submit it from a script with the Manager's API (POST /api/v3/jobs with type
// "recon3d-batch" and these settings); it takes no .blend file.

const JOB_TYPE = {
  label: "Recon3D Batch",
  description: "Turn a folder of photos into 3D models with Recon3D, N photos at a time",
  settings: [
    { key: "photos", type: "string", subtype: "dir_path", required: true,
      description: "Folder of photos, as every Worker sees it (shared storage)" },
    { key: "output", type: "string", subtype: "dir_path", required: true,
      description: "Where each task writes part-K.blend, and glb/ with one GLB per photo" },
    { key: "tasks", type: "int32", default: 4, required: true,
      description: "How many tasks to split the photos into" },
    { key: "provider", type: "string", default: "segmind_sam3d", required: true,
      description: "Recon3D provider id" },
    { key: "jobs", type: "int32", default: 4,
      description: "Jobs each task keeps running on the service at once" },
    { key: "prompt", type: "string", default: "",
      description: "What to model in each photo (empty: the main object)" },
    { key: "layout", type: "string", choices: ["grid", "row", "original"], default: "grid" },
    { key: "extra_args", type: "string", default: "",
      description: "More `recon3d generate` arguments, e.g. --size 0.5 --seed 7" },
  ],
};

function compileJob(job) {
  const settings = job.settings;
  const count = Math.max(1, settings.tasks);
  const extra = settings.extra_args
    ? settings.extra_args.split(" ").filter((arg) => arg.length > 0)
    : [];
  for (let k = 1; k <= count; k++) {
    const args = [
      "-b", "--online-mode", "--command", "recon3d", "generate", settings.photos,
      "--shard", `${k}/${count}`,
      "--provider", settings.provider,
      "--jobs", String(settings.jobs),
      "--layout", settings.layout,
      "--output", path.join(settings.output, `part-${k}.blend`),
      "--export", path.join(settings.output, "glb"),
    ];
    if (settings.prompt) {
      args.push("--prompt", settings.prompt);
    }
    const task = author.Task(`recon3d-${k}-of-${count}`, "blender");
    task.addCommand(author.Command("exec", { exe: "{blender}", args: args.concat(extra) }));
    job.addTask(task);
  }
}
