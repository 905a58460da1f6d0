// Upload with a progress bar: the file goes straight to the API (PUT /api/v1/files/data/...),
// signed by the page's session cookie and its CSRF token, then the folder is shown again.
(() => {
  const form = document.getElementById("upload");
  if (!form) return;
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = form.elements.file.files[0];
    if (!file) return;
    const folder = form.dataset.folder.replace(/\/$/, "");
    const path = `${folder}/${file.name}`.split("/").map(encodeURIComponent).join("/");
    const request = new XMLHttpRequest();
    request.open("PUT", `/api/v1/files/data${path}`);
    request.setRequestHeader("X-Tether-CSRF", form.dataset.csrf);
    if (file.type) request.setRequestHeader("Content-Type", file.type);
    bar.hidden = false;
    request.upload.onprogress = (progress) => {
      if (progress.lengthComputable) bar.value = (100 * progress.loaded) / progress.total;
    };
    request.onload = () => {
      if (request.status >= 200 && request.status < 300) {
        bar.value = 100;
        status.textContent = `Uploaded ${file.name}`;
        location.reload();
      } else {
        status.textContent = `Upload failed: ${request.status} ${request.responseText}`;
      }
    };
    request.onerror = () => { status.textContent = "Upload failed: the server is unreachable"; };
    request.send(file);
  });
})();
