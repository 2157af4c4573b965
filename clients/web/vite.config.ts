import { defineConfig } from "vite";

// A plain page: the SDK's browser parts come from @sealpost/client's "browser" condition.
export default defineConfig({
  root: import.meta.dirname,
  build: { outDir: "dist", emptyOutDir: true, target: "es2022" },
  server: { host: "localhost", port: 5173 },
});
