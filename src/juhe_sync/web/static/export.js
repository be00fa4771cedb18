// juhe-sync HTML export: draws the page's messages (embedded as JSON) with the viewer's own
// rendering, so an export looks like the viewer and needs no server or network.
document.getElementById("messages").replaceChildren(
  ...withDays(JSON.parse(document.getElementById("data").textContent), (m) => messageNode(m)));
