// Show only the timing fields that the chosen "Runs" option uses; without JavaScript every field shows.
(() => {
  const timing = document.getElementById("timing");
  if (!timing) return;
  const show = () => {
    document.querySelectorAll("[data-timing]").forEach((field) => {
      field.hidden = field.dataset.timing !== timing.value;
    });
  };
  timing.addEventListener("change", show);
  show();
})();
